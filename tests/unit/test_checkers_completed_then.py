"""A ``completed`` outcome followed by any later outcome of the same job is a regression: the
finished job was handed out again (a reaper, or a worker back from a pause or a cut, wrote a
``retrying`` row after the completion). Hand-built histories, every checker."""

from __future__ import annotations

from jobchaos_histories import Builder

from harness.checkers import Anomaly, Backoff, Policy, Validity, check, check_outcomes
from harness.history import OBSERVER, OUTCOME, reported_outcome

POLICY = Policy(max_tries=3, backoff=Backoff(base=0.1, cap=0.4), job_timeout=1.0, lease=2.0)


def _outcome(b: Builder, job: str, status: str, at: float, attempt: int, worker: str,
             reason: str | None = None) -> int:
    return b.op("ok", OBSERVER, OUTCOME, reported_outcome(
        job, status, reason=reason, attempt=attempt, worker=worker, at=at).value)  # type: ignore[arg-type]


def _base() -> Builder:
    """Job a ran twice: attempt 1 reclaimed (lease_lost), attempt 2 completed."""
    b = Builder()
    b.dispatch("a", ["db_write"])  # 0 1
    b.drain()  # 2 3
    b.probe()  # 4
    b.attempt("a", 1000.0, 1003.0, "retrying", 1, reason="lease_lost")  # 5
    b.attempt("a", 1003.2, 1003.5, "completed", 2)  # 6
    b.effect("a", 0, at=1000.1)  # 7
    return b


def test_retrying_then_completed_is_valid() -> None:
    b = _base()
    _outcome(b, "a", "retrying", 1003.0, 1, "worker-2", reason="lease_lost")  # 8
    _outcome(b, "a", "completed", 1003.5, 2, "worker-2")  # 9
    result = check(b.build(), POLICY)
    assert result.validity is Validity.VALID, result
    assert result.counts["terminal_completed"] == 1
    assert result.counts["regressed"] == 0 and result.counts["duplicated"] == 0


def test_completed_then_retrying_is_regressed_with_both_ops() -> None:
    b = _base()
    _outcome(b, "a", "retrying", 1003.0, 1, "worker-2", reason="lease_lost")  # 8
    done = _outcome(b, "a", "completed", 1003.5, 2, "worker-2")  # 9
    # worker-1, back from its pause, puts the finished job back: a retrying row after it.
    back = _outcome(b, "a", "retrying", 1004.0, 1, "worker-1", reason="timeout")  # 10
    result = check_outcomes(b.build(), POLICY)
    assert result.validity is Validity.INVALID
    assert result.anomalies == (Anomaly(
        "regressed", "a", (done, back),
        "reported completed, then retrying (timeout) for attempt 1 by worker-1"),)
    assert check(b.build(), POLICY).validity is Validity.INVALID


def test_order_is_by_time_not_by_row() -> None:
    # The retrying row came before the completion in time: valid, whatever the op order.
    b = _base()
    _outcome(b, "a", "completed", 1003.5, 2, "worker-2")  # 8
    _outcome(b, "a", "retrying", 1003.0, 1, "worker-2", reason="lease_lost")  # 9
    assert check(b.build(), POLICY).validity is Validity.VALID


def test_completed_twice_is_duplicated_not_regressed() -> None:
    b = _base()
    _outcome(b, "a", "retrying", 1003.0, 1, "worker-2", reason="lease_lost")  # 8
    _outcome(b, "a", "completed", 1003.5, 2, "worker-2")  # 9
    _outcome(b, "a", "completed", 1004.0, 1, "worker-1")  # 10: the zombie completes it again
    result = check_outcomes(b.build(), POLICY)
    assert [a.kind for a in result.anomalies] == ["duplicated"]
    assert result.anomalies[0].detail == "completed reported 2 times"


def test_many_retries_then_one_completion_stay_valid() -> None:
    # Retrying rows are outcome ops now: they must not count as duplicate terminal outcomes.
    b = Builder()
    for job in ("x", "y"):
        b.dispatch(job, [{"op": "fail", "times": 2}])
    b.drain()
    b.probe()
    for job, t0 in (("x", 1000.0), ("y", 1000.05)):
        for n in (1, 2):
            b.attempt(job, t0 + n, t0 + n + 0.01, "retrying", n)
            _outcome(b, job, "retrying", t0 + n + 0.01, n, "worker-1", reason="exception")
        b.attempt(job, t0 + 3.5, t0 + 3.51, "completed", 3)
        _outcome(b, job, "completed", t0 + 3.51, 3, "worker-1")
    result = check(b.build(), POLICY)
    assert result.validity is Validity.VALID, result
    assert result.counts["terminal_completed"] == 2
