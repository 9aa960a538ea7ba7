"""Were retries bounded and spaced as the policy says, and did no two attempts of one job
run at the same time? Cost: O(n).

Each attempt op is one attempt, however its worker numbered it (a library that redelivers
without counting repeats the number): attempts are counted and ordered as ops, and a strike's
``params.inflight`` names them by identity (:mod:`harness.checkers.identity`).

Attempts of one job are taken in order of their start (``at``). Retry ``n`` (the attempt
after the ``n``-th) must start no sooner than the backoff allows after attempt ``n`` ended
(its outcome row, ``ended``): ``backoff.min_delay(n) * (1 - hammer_tolerance) -
hammer_slack``. A pair whose first attempt has no outcome (its process died; the lease decides
when it runs again), or whose outcome was recorded only after the retry began, is not judged
for backoff.

Overlap is judged on when each attempt really stopped, never on its outcome row (a reaper may
write ``lease_lost`` while the attempt still runs elsewhere): its worker's ``stopped``, or
else the time of a nemesis ``kill`` of its worker that found it in flight. An attempt whose
stop is not known is not judged (counted as ``stops_unknown``). An attempt frozen by a nemesis
``pause`` that stops within one lease of its resume (it found the lease it lost while frozen)
counts as stopped when it was frozen. Unless the policy allows concurrent attempts, an attempt
that starts before an earlier attempt of the same job stopped is ``overlapping``.
"""

from __future__ import annotations

from typing import Any

from harness.checkers.facts import facts
from harness.checkers.findings import Findings
from harness.checkers.identity import Candidate, candidate, label, named
from harness.checkers.model import CheckResult
from harness.checkers.policy import Policy
from harness.history import ATTEMPT, DISPATCH, History
from harness.nemesis.events import WORKER_KILLS

NAME = "retries"
KINDS = ("retry_bound", "hammering", "overlapping")

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

    # hammering: a retry sooner than the backoff after the failure was recorded.
    tol, slack, backoff = 1.0 - policy.hammer_tolerance, policy.hammer_slack, policy.backoff
    floor = [0.0] + [backoff.min_delay(n) * tol - slack for n in range(1, most + 1)]
    judged = 0
    for c, runs in fx.runs.items():
        for n in range(1, len(runs)):
            start, _, _, i = runs[n]
            _prev_start, prev_end, prev_status, p = runs[n - 1]
            if prev_end is None or start < prev_end:
                continue
            judged += 1
            gap = start - prev_end
            if prev_status != "completed" and gap < floor[n]:
                out.add("hammering", c, f"retry {n} came {gap:.3f} s after the failure; the "
                        f"backoff allows no less than {max(floor[n], 0.0):.3f} s", [p, i])

    overlaps_judged, stops_unknown = _overlapping(history, policy, fx.runs, out)

    undecided = None
    if n_attempts == 0 and (fx.n_completed or fx.reported_dead):
        undecided = "no attempt records: retry bound and backoff cannot be checked"
    return out.result(undecided=undecided, attempts=n_attempts, retried_jobs=len(fx.runs),
                      retry_gaps_judged=judged, overlaps_judged=overlaps_judged,
                      stops_unknown=stops_unknown)


def _overlapping(history: History, policy: Policy,
                 runs: dict[int, list[tuple[Any, Any, Any, int]]], out: Findings
                 ) -> tuple[int, int]:
    """Report attempts that started before an earlier attempt of their job stopped; return
    (attempts judged against an earlier stop, attempts whose stop is not known)."""
    if not runs:
        return 0, 0
    if policy.concurrent_attempts:
        out.notes.append("the worker declares concurrent attempts: overlap not judged")
        return 0, 0
    killed, paused = _struck(history, runs)
    values = history.values
    judged = unknown = 0
    for c, attempts in runs.items():
        latest: tuple[float, int, tuple[int, ...]] | None = None  # (stop, op, proof)
        for start, _, _, i in attempts:
            v = values[i]
            if latest is not None:
                judged += 1
                stop, p, proof = latest
                if start < stop:
                    out.add("overlapping", c,
                            f"{_label(v)} started {stop - start:.3f} s before "
                            f"{_label(values[p])} stopped", [p, i, *proof])
            stopped = _stop(v, killed.get(i), paused.get(i, ()), policy.lease)
            if stopped is None:
                unknown += 1
            elif latest is None or stopped[0] > latest[0]:
                latest = (stopped[0], i, stopped[1])
    return judged, unknown


def _label(value: dict[str, Any]) -> str:
    return label(value.get("attempt"), value.get("worker"), value.get("attempt_id"))


def _stop(value: dict[str, Any], killed: tuple[float, int] | None,
          paused: tuple[tuple[float, float | None, int], ...], lease: float
          ) -> tuple[float, tuple[int, ...]] | None:
    """When the attempt really stopped, and the fault ops that say so (None: not known)."""
    recorded = value.get("stopped")
    proof: tuple[int, ...]
    if isinstance(recorded, int | float):
        stop, proof = float(recorded), ()
    elif killed is not None:
        stop, proof = killed[0], (killed[1],)
    else:
        return None
    for frozen, resumed, op in paused:
        if resumed is not None and resumed <= stop <= resumed + lease:
            return frozen, (*proof, op)
    return stop, proof


def _struck(history: History, runs: dict[int, list[tuple[Any, Any, Any, int]]]
            ) -> tuple[dict[int, tuple[float, int]],
                       dict[int, tuple[tuple[float, float | None, int], ...]]]:
    """The attempts (by op, of the jobs in ``runs``) the nemesis found in flight when it
    SIGKILLed their worker (``kill``, ``kill_host``; -> the time and inject op) or froze it
    (-> each pause's start, resume and inject op)."""
    killed: dict[int, tuple[float, int]] = {}
    paused: dict[int, tuple[tuple[float, float | None, int], ...]] = {}
    spans = [s for s in history.fault_spans()
             if (s.kind in WORKER_KILLS or s.kind == "pause") and s.inflight]
    if not spans:
        return killed, paused
    fx = facts(history)
    codes: dict[Any, int] = {fx.job(c): c for c in runs}
    values = history.values
    attempts: dict[int, list[Candidate]] = {}
    for span in spans:
        for entry in span.inflight:
            c = codes.get(entry.get("job"))
            if c is None:
                continue  # a job that ran once: no other attempt to overlap
            if c not in attempts:
                attempts[c] = [candidate(i, values[i]) for *_, i in runs[c]]
            i = named(entry, span.start, attempts[c])
            if i is None:
                continue
            if span.kind in WORKER_KILLS:
                killed.setdefault(i, (span.start, span.inject))
            else:
                paused[i] = (*paused.get(i, ()), (span.start, span.end, span.inject))
    return killed, paused
