"""Checkers: pure functions from a history (and a policy) to a verdict.

``check(history, policy)`` runs every checker and composes their results: ``invalid`` beats
``unknown`` beats ``valid``, and a checker that raises counts as ``unknown`` with its error.
See docs/history-and-checkers.md for the anomaly kinds.
"""

from __future__ import annotations

from collections.abc import Mapping

from harness.checkers.effects import check_effects
from harness.checkers.jobmaps import gc_paused
from harness.checkers.locks import check_locks
from harness.checkers.model import (
    ANOMALY_KINDS,
    Anomaly,
    Checker,
    CheckResult,
    Severity,
    Validity,
    compose,
    run_guarded,
    worst,
)
from harness.checkers.outcomes import check_outcomes
from harness.checkers.policy import Backoff, Guarantee, Policy, WorkerKnobs
from harness.checkers.queue import check_queue
from harness.checkers.retries import check_retries
from harness.checkers.timeouts import check_timeouts
from harness.checkers.workers import check_workers
from harness.history import History

CHECKERS: Mapping[str, Checker] = {
    "queue": check_queue,
    "effects": check_effects,
    "outcomes": check_outcomes,
    "retries": check_retries,
    "locks": check_locks,
    "workers": check_workers,
    "timeouts": check_timeouts,
}


def check(history: History, policy: Policy | None = None,
          checkers: Mapping[str, Checker] = CHECKERS) -> CheckResult:
    """Run ``checkers`` (all by default) over ``history`` and compose their results.

    An empty history is unknown, never valid.
    """
    policy = policy or Policy()
    with gc_paused():
        results = [run_guarded(name, c, history, policy) for name, c in checkers.items()]
    result = compose(results, name="jobchaos")
    if len(history) == 0:
        return CheckResult(result.name, Validity.UNKNOWN, result.anomalies, result.counts,
                           ("the history is empty", *result.notes), result.error,
                           result.children)
    return result


__all__ = [
    "ANOMALY_KINDS",
    "CHECKERS",
    "Anomaly",
    "Backoff",
    "CheckResult",
    "Checker",
    "Guarantee",
    "Policy",
    "Severity",
    "Validity",
    "WorkerKnobs",
    "check",
    "check_effects",
    "check_locks",
    "check_outcomes",
    "check_queue",
    "check_retries",
    "check_timeouts",
    "check_workers",
    "compose",
    "run_guarded",
    "worst",
]
