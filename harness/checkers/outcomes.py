"""Are the terminal outcomes consistent and accounted for? Cost: O(n).

Terminal facts about a job: outcome rows the worker reported (``completed``, ``failed`` with a
reason) and the probe's dead-letter entries. They must agree, must not be followed by more
runs, and every failure must be both recorded and dead-lettered.
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
    completed, failed, dead, live = fx.completed, fx.failed, fx.dead, fx.live
    available = fx.probe[0]

    # regressed: a terminal outcome later contradicted.
    for c in fx.members(fx.completed_map & fx.failed_map):
        ok, bad = completed[c], failed[c]
        first, then = ("completed", "failed") if _first(fx, ok, bad) else ("failed", "completed")
        out.add("regressed", c, f"reported {first}, then {then}", [ok, bad])
    for c in fx.members(fx.completed_map & fx.dead_map):
        out.add("regressed", c, "reported completed, but dead-lettered", [completed[c], dead[c]])
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

    # duplicated: the same terminal outcome reported more than once (the job ran twice).
    counts = fx.outcome_counts
    if counts is not None:
        for c, n in counts.items():
            if n > 1 and not (fx.is_completed(c) and c in failed):
                status = "completed" if fx.is_completed(c) else "failed"
                out.add("duplicated", c, f"{status} reported {n} times", evidence=(OUTCOME,))

    # unaccounted_failure: dead-lettered with no failure record ...
    for c in fx.members(fx.dead_map & ~fx.failed_map & ~fx.completed_map):
        reason = values[dead[c]].get("reason")
        out.add("unaccounted_failure", c, "dead-lettered with no failure record"
                + (f" (dead letter reason: {reason})" if reason else ""), [dead[c]],
                evidence=(ATTEMPT,))
    # ... or a failure recorded while tries remained, and the job never ran again ...
    have_attempts = bool(fx.attempt_ops[0])
    if failed and not have_attempts:
        out.notes.append("no attempt records: failures with tries left cannot be checked")
    if have_attempts:
        _tries_left(out, fx, policy)
    # ... or a failure never dead-lettered (when the worker keeps a dead letter queue).
    if policy.dead_letter and available:
        for c in fx.members(fx.failed_map & ~fx.dead_map & ~fx.completed_map):
            if c not in live:
                out.add("unaccounted_failure", c, "failed permanently, but not dead-lettered",
                        [failed[c], *fx.probe[1][-1:]])
    return out.result(terminal_completed=fx.n_completed, terminal_failed=len(failed),
                      terminal_dead=len(dead))


def _tries_left(out: Findings, fx: Facts, policy: Policy) -> None:
    values = fx.h.values
    counts = {c: fx.n_attempts(c) for c in fx.failed}
    early = [c for c in sorted(fx.failed) if counts[c] < policy.max_tries
             and values[fx.failed[c]].get("reason") not in policy.final_reasons
             and not fx.is_completed(c)]  # completed too: reported as regressed
    attempts = fx.job_ops(ATTEMPT, early, limit=policy.max_tries)
    for c in early:
        i = fx.failed[c]
        at = values[i].get("at")
        if at is not None and any((values[a].get("at") or 0) > at for a in attempts[c]):
            continue  # it ran again: reported as regressed
        reason = values[i].get("reason") or "no reason"
        out.add("unaccounted_failure", c, f"failed ({reason}) after {counts[c]} of "
                f"{policy.max_tries} tries, and never ran again", [i, *attempts[c]])


def _first(fx: Facts, a: int, b: int) -> bool:
    """Whether op ``a``'s event came before op ``b``'s (by ``at`` when both have one)."""
    at_a, at_b = fx.h.values[a].get("at"), fx.h.values[b].get("at")
    if isinstance(at_a, int | float) and isinstance(at_b, int | float):
        return at_a <= at_b
    return a <= b
