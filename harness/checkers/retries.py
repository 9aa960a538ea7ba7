"""Were retries bounded and spaced as the policy says? Cost: O(n).

Attempts of one job are taken in order of their start (``at``). Retry ``n`` (the attempt
after the ``n``-th) must start no sooner than the backoff allows after attempt ``n`` ended:
``backoff.min_delay(n) * (1 - hammer_tolerance) - hammer_slack``. A pair whose first attempt
has no end (its process died; the lease decides when it runs again) is not judged, except
that no attempt may start while another of the same job is still running.
"""

from __future__ import annotations

from harness.checkers.facts import facts
from harness.checkers.findings import Findings
from harness.checkers.model import CheckResult
from harness.checkers.policy import Policy
from harness.history import ATTEMPT, DISPATCH, History

NAME = "retries"
KINDS = ("retry_bound", "hammering")


def check_retries(history: History, policy: Policy) -> CheckResult:
    fx = facts(history)
    out = Findings(NAME, policy, fx, KINDS)
    n_attempts = len(fx.attempt_ops[0])

    # retry_bound: more attempts than the policy allows.
    most = fx.most_attempts
    if most > policy.max_tries:
        counts = fx.attempt_counts
        over = sorted(c for c, n in counts.items() if n > policy.max_tries)
        proof = fx.job_ops(ATTEMPT, over, limit=policy.max_tries + 1)
        for c in over:
            out.add("retry_bound", c, f"{counts[c]} attempts, at most {policy.max_tries} allowed",
                    proof[c], evidence=(DISPATCH,))

    # hammering: a retry sooner than the backoff (or while the last attempt still ran).
    tol, slack, backoff = 1.0 - policy.hammer_tolerance, policy.hammer_slack, policy.backoff
    floor = [0.0] + [backoff.min_delay(n) * tol - slack for n in range(1, most + 1)]
    judged = 0
    for c, runs in fx.runs.items():
        for n in range(1, len(runs)):
            start, _, _, i = runs[n]
            _prev_start, prev_end, prev_status, p = runs[n - 1]
            if prev_end is None:
                continue
            judged += 1
            gap = start - prev_end
            if gap < 0:
                out.add("hammering", c, f"attempt {n + 1} started {-gap:.3f} s before attempt "
                        f"{n} ended", [p, i])
            elif prev_status != "completed" and gap < floor[n]:
                out.add("hammering", c, f"retry {n} came {gap:.3f} s after the failure; the "
                        f"backoff allows no less than {max(floor[n], 0.0):.3f} s", [p, i])

    undecided = None
    if n_attempts == 0 and (fx.n_completed or fx.reported_dead):
        undecided = "no attempt records: retry bound and backoff cannot be checked"
    return out.result(undecided=undecided, attempts=n_attempts, retried_jobs=len(fx.runs),
                      retry_gaps_judged=judged)
