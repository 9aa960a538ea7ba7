"""Are the terminal outcomes consistent and accounted for? Cost: O(n).

Terminal facts about a job: outcome rows the worker reported (``completed``, or ``dead`` with
a failure reason) and the probe's dead-letter entries. They must agree, must not be followed
by more runs or by any later outcome row (a ``retrying`` row after a completion: a reaper or a
worker back from a pause put a finished job back), and every job that died must be both
reported ``dead`` and dead-lettered.
"""

from __future__ import annotations

from harness.checkers.facts import Facts, facts
from harness.checkers.findings import Findings
from harness.checkers.model import CheckResult
from harness.checkers.policy import Policy
from harness.history import ATTEMPT, OUTCOME, History

NAME = "outcomes"
KINDS = ("regressed", "unaccounted_failure", "duplicated")


def check_outcomes(history: History, policy: Policy) -> CheckResult:
    fx = facts(history)
    out = Findings(NAME, policy, fx, KINDS)
    values = history.values
    completed, died, dead_lettered, live = (fx.completed, fx.reported_dead, fx.dead_lettered,
                                            fx.live)
    available = fx.probe[0]

    # regressed: a terminal outcome later contradicted.
    for c in fx.members(fx.completed_map & fx.reported_dead_map):
        ok, bad = completed[c], died[c]
        first, then = ("completed", "dead") if _first(fx, ok, bad) else ("dead", "completed")
        out.add("regressed", c, f"reported {first}, then {then}", [ok, bad])
    for c in fx.members(fx.completed_map & fx.dead_lettered_map):
        out.add("regressed", c, "reported completed, but dead-lettered",
                [completed[c], dead_lettered[c]])
    for c, where in sorted(live.items()):
        end = fx.outcome(c)
        if end is not None:
            state = values[where[0]].get("state", "locked")
            out.add("regressed", c, f"reported {values[end]['status']}, but {state} again",
                    [end, *where])
    for c, runs in fx.runs.items():
        end = fx.outcome(c)
        if end is None or values[end].get("at") is None or runs[-1][0] <= values[end]["at"]:
            continue
        later = [i for at, _, _, i in runs if at > values[end]["at"]]
        if later:
            out.add("regressed", c, f"reported {values[end]['status']}, then ran again",
                    [end, *later])

    _completed_then_retrying(out, fx)

    # duplicated: the same terminal outcome reported more than once (the job ran twice).
    counts = fx.outcome_counts
    if counts is not None:
        for c, n in counts.items():
            if n > 1 and not (fx.is_completed(c) and c in died):
                status = "completed" if fx.is_completed(c) else "dead"
                out.add("duplicated", c, f"{status} reported {n} times", evidence=(OUTCOME,))

    # unaccounted_failure: dead-lettered with no dead outcome reported ...
    for c in fx.members(fx.dead_lettered_map & ~fx.reported_dead_map & ~fx.completed_map):
        i = dead_lettered[c]
        reason = values[i].get("reason") or values[i].get("detail")
        out.add("unaccounted_failure", c, "dead-lettered with no dead outcome reported"
                + (f" (dead letter reason: {reason})" if reason else ""), [i],
                evidence=(ATTEMPT,))
    # ... or reported dead while tries remained, and the job never ran again ...
    have_attempts = bool(fx.attempt_ops[0])
    if died and not have_attempts:
        out.notes.append("no attempt records: deaths with tries left cannot be checked")
    if have_attempts:
        _tries_left(out, fx, policy)
    # ... or reported dead but never dead-lettered (when the worker keeps a dead letter queue).
    if policy.dead_letter and available:
        for c in fx.members(fx.reported_dead_map & ~fx.dead_lettered_map & ~fx.completed_map):
            if c not in live:
                out.add("unaccounted_failure", c, "reported dead, but not dead-lettered",
                        [died[c], *fx.probe[1][-1:]])
    return out.result(terminal_completed=fx.n_completed, terminal_dead=len(died),
                      terminal_dead_lettered=len(dead_lettered))


def _completed_then_retrying(out: Findings, fx: Facts) -> None:
    """regressed: a ``completed`` outcome followed by a ``retrying`` one of the same job (a
    later ``dead`` is reported above, a later ``completed`` as duplicated)."""
    idx, codes = fx.retrying
    if not idx or not fx.completed_map & fx.map_of(codes):
        return  # the usual case: no job both completed and retried
    values = fx.h.values
    suspects = fx.members(fx.completed_map & fx.map_of(codes))
    for c, ops in fx.job_ops(OUTCOME, suspects, limit=1000).items():
        done = [i for i in ops if values[i].get("status") == "completed"]
        first = min(done, key=lambda i: (_at(fx, i), i))
        later = [i for i in ops if values[i].get("status") == "retrying" and _first(fx, first, i)]
        if later:
            i = later[0]
            v = values[i]
            by = f" by {v['worker']}" if v.get("worker") else ""
            out.add("regressed", c, f"reported completed, then retrying ({v.get('reason')}) "
                    f"for attempt {v.get('attempt', '?')}{by}", [first, i])


def _at(fx: Facts, i: int) -> float:
    at = fx.h.values[i].get("at")
    return float(at) if isinstance(at, int | float) else float("inf")


def _tries_left(out: Findings, fx: Facts, policy: Policy) -> None:
    values = fx.h.values
    died = fx.reported_dead
    counts = {c: fx.n_attempts(c) for c in died}
    early = [c for c in sorted(died) if counts[c] < policy.max_tries
             and values[died[c]].get("reason") not in policy.final_reasons
             and not fx.is_completed(c)]  # completed too: reported as regressed
    attempts = fx.job_ops(ATTEMPT, early, limit=policy.max_tries)
    for c in early:
        i = died[c]
        at = values[i].get("at")
        if at is not None and any((values[a].get("at") or 0) > at for a in attempts[c]):
            continue  # it ran again: reported as regressed
        reason = values[i].get("reason") or "no reason"
        out.add("unaccounted_failure", c, f"reported dead ({reason}) after {counts[c]} of "
                f"{policy.max_tries} tries, and never ran again", [i, *attempts[c]])


def _first(fx: Facts, a: int, b: int) -> bool:
    """Whether op ``a``'s event came before op ``b``'s (by ``at`` when both have one)."""
    at_a, at_b = fx.h.values[a].get("at"), fx.h.values[b].get("at")
    if isinstance(at_a, int | float) and isinstance(at_b, int | float):
        return at_a <= at_b
    return a <= b
