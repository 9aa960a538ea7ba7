"""Did each job's side effects happen as often as their guarantee says? Cost: O(n).

Expected effects come from the steps of each job's dispatch: step ``n`` whose op the policy
has a guarantee for (``db_write``, ``email``) should leave effects in *slot* ``(n, kind)``.
Work is done slot by slot on job maps, so the usual case costs a few C-level passes.
"""

from __future__ import annotations

from array import array
from collections import Counter, deque
from collections.abc import Collection
from itertools import compress, repeat
from operator import add, is_, lt, mul
from typing import Any

from harness.checkers.dispatch import DispatchFacts
from harness.checkers.facts import Facts, facts
from harness.checkers.findings import Findings
from harness.checkers.jobmaps import job_map, span
from harness.checkers.model import CheckResult
from harness.checkers.policy import Policy
from harness.checkers.resends import GUARANTEE as RESEND_GUARANTEE
from harness.checkers.resends import check_resends
from harness.history import DISPATCH, EFFECT, History

NAME = "effects"
KINDS = ("duplicated", "unsuccessful_completion", "unexpected")

Slot = tuple[Any, Any]  # (step index, kind)
_MANY_TEMPLATES = 48


def check_effects(history: History, policy: Policy) -> CheckResult:
    fx = facts(history)
    d = fx.dispatch
    out = Findings(NAME, policy, fx, KINDS)
    codes, steps, kinds = fx.effect_ops
    n_expected = _as_expected(fx, d, policy.guarantees.keys(), codes, steps, kinds)
    if n_expected is not None:  # the usual case, decided in a few passes
        return out.result(effects=len(codes), effects_expected=n_expected, effects_missing=0)
    observed = _observed(codes, steps, kinds)
    expected = _expected(fx, d, policy.guarantees.keys())
    must = {k for k, g in policy.guarantees.items() if g != "at_most_once"}
    stray: dict[int, list[Slot]] = {}
    missing: dict[int, list[Slot]] = {}
    n_expected = n_missing = 0
    for slot in sorted(observed.keys() | expected.keys(), key=str):
        seen_codes, want = observed.get(slot, array("i")), expected.get(slot, array("i"))
        seen_map, want_map = job_map(fx.n, seen_codes), job_map(fx.n, want)
        n_expected += len(want)
        absent = want_map & ~seen_map
        n_missing += absent.bit_count()  # one bit per job: each byte is 0 or 1
        # unexpected: an effect no dispatched job's steps call for (wrong job, step or kind).
        for c in fx.members(seen_map & ~want_map):
            stray.setdefault(c, []).append(slot)
        # duplicated: an effect more often than its guarantee allows.
        if seen_map.bit_count() != len(seen_codes):
            _duplicates(out, fx, policy, slot, seen_codes)
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


def _as_expected(fx: Facts, d: DispatchFacts, guaranteed: Collection[str], codes: array[int],
                 steps: list[Any], kinds: list[Any]) -> int | None:
    """How many effects the steps call for, if the effects observed are exactly those, each
    once; None if not (then the slot by slot comparison finds out what is off)."""
    jobs, of_job = d.expected()
    templates = dict(zip(map(id, of_job), of_job, strict=True))  # shared step lists: a handful
    number = {i: k for k, i in enumerate(templates)}
    slots = [_effects_of(t, guaranteed) for t in templates.values()]
    # Slots numbered in order of step, so that a job's effects listed by step go up.
    slot_id = {slot: i for i, slot in enumerate(sorted(
        {slot for of_t in slots for slot in of_t}, key=lambda s: (s[0], str(s[1]))))}
    width = max(len(slot_id), 1)
    t_of = list(map(number.__getitem__, map(id, of_job)))  # template number of each job
    counts = ([t_of.count(k) for k in range(len(slots))] if len(slots) <= 8 else
              [Counter(t_of)[k] for k in range(len(slots))])
    n_expected = sum(n * len(of_t) for n, of_t in zip(counts, slots, strict=True))
    if n_expected != len(codes):
        return None
    by_step: dict[Any, dict[Any, int]] = {}
    for (step, kind), i in slot_id.items():
        by_step.setdefault(step, {})[kind] = i
    try:
        sids = list(map(dict.__getitem__, map(by_step.__getitem__, steps), kinds))
    except (KeyError, TypeError):
        return None  # an effect no step calls for
    r = span(jobs)
    if r is not None and r.start == 0:
        template = t_of + [-1] * (fx.n - r.stop)
    else:
        template = [-1] * fx.n
        deque(map(template.__setitem__, jobs, t_of), maxlen=0)
    # Each effect in a slot its job's steps call for ...
    allowed = {k * width + slot_id[slot] for k, of_t in enumerate(slots) for slot in of_t}
    if not all(map(allowed.__contains__, map(add, map(mul, map(
            template.__getitem__, codes), repeat(width)), sids))):
        return None
    # ... and no slot of a job twice: then, as many as expected, they are all there. Usually
    # effects are listed by job and step, so they go up; else count the distinct ones.
    keys = list(map(add, map(mul, codes, repeat(width)), sids))
    if not all(map(lt, keys, keys[1:])) and len(set(keys)) != len(keys):
        return None
    return n_expected


def _duplicates(out: Findings, fx: Facts, policy: Policy, slot: Slot, codes: array[int]
                ) -> None:
    step, kind = slot
    guarantee = policy.guarantee(kind)
    if guarantee is None:
        return  # an effect kind without a guarantee is reported as unexpected
    repeated = {c: n for c, n in Counter(codes).items() if n > 1}
    if guarantee == RESEND_GUARANTEE:
        check_resends(out, fx, slot, list(repeated))
        return
    for c, n in repeated.items():
        if guarantee == "at_least_once":
            out.add("duplicated", c, f"step {step} {kind} happened {n} times (at least once: "
                    "tolerated)", severity="info", evidence=(EFFECT,))
        else:
            out.add("duplicated", c, f"step {step} {kind} happened {n} times "
                    f"({guarantee.replace('_', ' ')})", evidence=(EFFECT, DISPATCH))


def _slots(slots: list[Slot]) -> str:
    return ", ".join(f"step {s} {k}" for s, k in slots)


def _observed(codes: array[int], steps: list[Any], kinds: list[Any]
              ) -> dict[Slot, array[int]]:
    """slot -> the job codes of the effects observed in it (a job once per effect)."""
    out: dict[Slot, array[int]] = {}
    distinct_steps = set(steps)
    for s in distinct_steps:
        if len(distinct_steps) == 1:
            cs, ks = codes, kinds
        else:
            sel = list(map(s.__eq__, steps))
            cs, ks = array("i", compress(codes, sel)), list(compress(kinds, sel))
        distinct_kinds = set(ks)
        for k in distinct_kinds:
            out[(s, k)] = (cs if len(distinct_kinds) == 1 else
                           array("i", compress(cs, map(k.__eq__, ks))))
    return out


def _expected(fx: Facts, d: DispatchFacts, kinds: Collection[str]
              ) -> dict[Slot, array[int]]:
    """slot -> the codes of the dispatched jobs whose steps leave an effect in it."""
    jobs, steps = d.expected()
    # The loader shares equal step lists, so a scenario has a handful of templates.
    templates: dict[int, Any] = dict(zip(map(id, steps), steps, strict=True))
    out: dict[Slot, array[int]] = {}
    if len(templates) <= _MANY_TEMPLATES:
        for template in templates.values():
            slots = _effects_of(template, kinds)
            if slots:
                of_t = (array("i", compress(jobs, map(is_, steps, repeat(template))))
                        if len(templates) > 1 else array("i", jobs))
                for slot in slots:
                    out.setdefault(slot, array("i")).extend(of_t)
    else:
        for c, s in zip(jobs, steps, strict=True):
            for slot in _effects_of(s, kinds):
                out.setdefault(slot, array("i")).append(c)
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
