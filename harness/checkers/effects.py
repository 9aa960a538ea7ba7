"""Did each job's side effects happen as often as their guarantee says? Cost: O(n).

Expected effects come from the steps of each job's dispatch: step ``n`` whose op the policy
has a guarantee for (``db_write``, ``email``) should leave effects in *slot* ``(n, kind)``.
Work is done slot by slot on job maps, so the usual case costs a few C-level passes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from itertools import compress, repeat
from operator import is_
from typing import Any

from harness.checkers.facts import DispatchFacts, Facts, facts, job_map
from harness.checkers.findings import Findings
from harness.checkers.model import CheckResult
from harness.checkers.policy import Policy
from harness.history import DISPATCH, EFFECT, History

NAME = "effects"
KINDS = ("duplicated", "unsuccessful_completion", "unexpected")

Slot = tuple[Any, Any]  # (step index, kind)
_MANY_TEMPLATES = 48


def check_effects(history: History, policy: Policy) -> CheckResult:
    fx = facts(history)
    d = fx.dispatch
    out = Findings(NAME, policy, fx, KINDS)
    _, codes, steps, kinds = fx.effect_ops
    observed = _observed(codes, steps, kinds)
    expected = _expected(fx, d, policy.guarantees.keys())
    must = {k for k, g in policy.guarantees.items() if g != "at_most_once"}
    stray: dict[int, list[Slot]] = {}
    missing: dict[int, list[Slot]] = {}
    n_expected = n_missing = 0
    for slot in sorted(observed.keys() | expected.keys(), key=str):
        seen_codes, want = observed.get(slot, []), expected.get(slot, [])
        seen_map, want_map = job_map(fx.n, seen_codes), job_map(fx.n, want)
        n_expected += len(want)
        absent = want_map & ~seen_map
        n_missing += absent.bit_count()  # one bit per job: each byte is 0 or 1
        # unexpected: an effect no dispatched job's steps call for (wrong job, step or kind).
        for c in fx.members(seen_map & ~want_map):
            stray.setdefault(c, []).append(slot)
        # duplicated: an effect more often than its guarantee allows.
        if seen_map.bit_count() != len(seen_codes):
            _duplicates(out, policy, slot, seen_codes)
        # unsuccessful_completion: reported completed, but an effect it must leave is missing.
        if slot[1] in must:
            for c in fx.members(absent & fx.completed_map):
                missing.setdefault(c, []).append(slot)

    for c in sorted(stray):
        why = ("the job was never dispatched" if d.first_invoke[c] < 0 or c in d.failed
               else "its steps have no such effect")
        out.add("unexpected", c, f"effects {_slots(stray[c])}: {why}", evidence=(EFFECT, DISPATCH))
    for c in sorted(missing):
        out.add("unsuccessful_completion", c, f"reported completed, but no effect of "
                f"{_slots(missing[c])}", [fx.completed[c]], evidence=(DISPATCH, EFFECT))
    return out.result(effects=len(codes), effects_expected=n_expected,
                      effects_missing=n_missing)


def _duplicates(out: Findings, policy: Policy, slot: Slot, codes: list[int]) -> None:
    step, kind = slot
    guarantee = policy.guarantee(kind)
    if guarantee is None:
        return  # an effect kind without a guarantee is reported as unexpected
    for c, n in Counter(codes).items():
        if n < 2:
            continue
        if guarantee == "at_least_once":
            out.add("duplicated", c, f"step {step} {kind} happened {n} times (at least once: "
                    "tolerated)", severity="info", evidence=(EFFECT,))
        else:
            out.add("duplicated", c, f"step {step} {kind} happened {n} times "
                    f"({guarantee.replace('_', ' ')})", evidence=(EFFECT, DISPATCH))


def _slots(slots: list[Slot]) -> str:
    return ", ".join(f"step {s} {k}" for s, k in slots)


def _observed(codes: list[int], steps: list[Any], kinds: list[Any]) -> dict[Slot, list[int]]:
    """slot -> the job codes of the effects observed in it (a job once per effect)."""
    out: dict[Slot, list[int]] = {}
    distinct_steps = set(steps)
    for s in distinct_steps:
        if len(distinct_steps) == 1:
            cs, ks = codes, kinds
        else:
            sel = list(map(s.__eq__, steps))
            cs, ks = list(compress(codes, sel)), list(compress(kinds, sel))
        distinct_kinds = set(ks)
        for k in distinct_kinds:
            out[(s, k)] = cs if len(distinct_kinds) == 1 else list(compress(cs, map(k.__eq__, ks)))
    return out


def _expected(fx: Facts, d: DispatchFacts, kinds: Collection[str]) -> dict[Slot, list[int]]:
    """slot -> the codes of the dispatched jobs whose steps leave an effect in it."""
    values, first = fx.h.values, d.first_invoke
    jobs = [c for c in d.invoked if c not in d.failed] if d.failed else d.invoked
    steps = [values[first[c]].get("steps") for c in jobs]
    # The loader shares equal step lists, so a scenario has a handful of templates.
    templates: dict[int, Any] = {}
    for s in steps:
        if len(templates) > _MANY_TEMPLATES:
            break
        templates.setdefault(id(s), s)
    out: dict[Slot, list[int]] = {}
    if len(templates) <= _MANY_TEMPLATES:
        for template in templates.values():
            slots = _effects_of(template, kinds)
            if slots:
                of_t = (list(compress(jobs, map(is_, steps, repeat(template))))
                        if len(templates) > 1 else jobs)
                for slot in slots:
                    out.setdefault(slot, []).extend(of_t)
    else:
        for c, s in zip(jobs, steps, strict=True):
            for slot in _effects_of(s, kinds):
                out.setdefault(slot, []).append(c)
    return out


def _effects_of(steps: Any, kinds: Collection[str]) -> list[Slot]:
    if not isinstance(steps, list):
        return []
    return [(n, k) for n, s in enumerate(steps) if (k := step_op(s)) in kinds]


def step_op(step: Any) -> Any:
    """What a step does: ``{"op": "db_write"}`` (the contract's form), ``{"kind": ...}``, or a
    bare ``"db_write"``."""
    if isinstance(step, dict):
        return step.get("op", step.get("kind"))
    return step
