"""Overlapping attempts of one job, judged on when each attempt really stopped."""

from __future__ import annotations

from jobchaos_histories import Builder

from harness.checkers import Anomaly, Backoff, Policy, Validity, check, check_retries
from harness.collectors import AttemptRow, OutcomeRow, TableRows, table_observations
from harness.history import HEAL, INJECT, attempt_record

# A timeout long enough for the reclaimed attempt's 3.5 s (overlap, not overran, is judged).
POLICY = Policy(max_tries=3, backoff=Backoff(base=0.2, cap=1.0), job_timeout=3.0, lease=2.0)


def reclaimed(b: Builder, *, stopped: float | None, rerun: float) -> tuple[int, int]:
    """Job ``j``: attempt 1 on worker-1 ended by a reaper's ``lease_lost`` at 1002.5 (its
    process stopped at ``stopped``), attempt 2 on worker-2 started at ``rerun``."""
    b.dispatch("j")  # 0 1
    b.probe()  # 2
    first = b.attempt("j", 1000.0, 1002.5, "retrying", 1, "lease_lost", stopped=stopped)
    second = b.attempt("j", rerun, rerun + 0.5, "completed", 2, stopped=rerun + 0.5,
                       worker="worker-2")
    b.effect("j", 0, at=rerun + 0.1)
    b.outcome("j", at=rerun + 0.5)
    return first, second


def test_an_attempt_started_while_the_reclaimed_one_still_ran_is_overlapping() -> None:
    b = Builder()
    first, second = reclaimed(b, stopped=1003.5, rerun=1002.8)
    result = check_retries(b.build(), POLICY)
    assert result.validity is Validity.INVALID
    assert result.anomalies == (Anomaly(
        "overlapping", "j", (first, second),
        "attempt 2 (worker-2) started 0.700 s before attempt 1 (worker-1) stopped"),)
    assert (result.counts["overlaps_judged"], result.counts["hammering"]) == (1, 0)
    assert [a.kind for a in check(b.build(), POLICY).anomalies] == ["overlapping"]


def test_a_reaper_ended_attempt_rerun_after_its_real_stop_is_valid() -> None:
    for stopped in (1001.0, 1002.6):  # died before the reaper's record, or stopped after it
        b = Builder()
        reclaimed(b, stopped=stopped, rerun=1002.8)
        result = check(b.build(), POLICY)
        assert result.validity is Validity.VALID, result.anomalies
        assert result.counts["overlaps_judged"] == 1


def test_sequential_retries_with_known_stops_are_valid() -> None:
    b = Builder()
    b.dispatch("k")
    b.probe()
    for n, at in enumerate((1000.0, 1001.0, 1002.0), start=1):
        b.attempt("k", at, at + 0.5, "retrying" if n < 3 else "completed", n, stopped=at + 0.5)
    b.effect("k", 0, at=1002.1)
    b.outcome("k", at=1002.5)
    result = check(b.build(), POLICY)
    assert result.validity is Validity.VALID, result.anomalies
    assert (result.counts["overlaps_judged"], result.counts["stops_unknown"]) == (2, 0)


def test_a_worker_that_declares_concurrent_attempts_is_not_judged() -> None:
    b = Builder()
    reclaimed(b, stopped=1003.5, rerun=1002.8)
    result = check_retries(b.build(), Policy(max_tries=3, backoff=Backoff(base=0.2),
                                             lease=2.0, concurrent_attempts=True))
    assert result.validity is Validity.VALID
    assert result.notes == ("the worker declares concurrent attempts: overlap not judged",)


def test_an_attempt_with_no_known_stop_is_not_judged() -> None:
    b = Builder()
    reclaimed(b, stopped=None, rerun=1002.8)  # an outside worker that does not record stops
    result = check_retries(b.build(), POLICY)
    assert result.validity is Validity.VALID
    assert (result.counts["overlaps_judged"], result.counts["stops_unknown"]) == (0, 1)


def test_a_killed_worker_stopped_its_attempt_when_the_nemesis_killed_it() -> None:
    # The kill's inject is at ~1000.003 (the builder's clock); attempt 1 has no stop of its own.
    for rerun, valid in ((1001.0, True), (999.9, False)):
        b = Builder()
        kill = b.strike(INJECT, "kill-1", "kill", inflight=[("j", 1, "worker-1")])
        b.strike(HEAL, "kill-1", "kill")
        b.dispatch("j")
        b.probe()
        first = b.attempt("j", 999.0, 1000.5, "retrying", 1, "lease_lost")
        second = b.attempt("j", rerun, rerun + 0.5, "completed", 2, stopped=rerun + 0.5,
                           worker="worker-2")
        result = check_retries(b.build(), POLICY)
        assert result.counts["overlaps_judged"] == 1
        if valid:
            assert result.validity is Validity.VALID, result.anomalies
        else:
            [a] = result.anomalies
            assert (a.kind, a.ops) == ("overlapping", (kill, first, second))


def test_a_paused_attempt_that_stops_soon_after_its_resume_stopped_when_frozen() -> None:
    # Frozen from ~1000.001 to ~1000.002 (the builder's clock), past its lease; the rerun
    # started while it was frozen. Stopping within a lease of the resume: it found its lease
    # gone at once. Running on for longer than a lease: it overlapped the rerun.
    for stopped, valid in ((1000.05, True), (1000.002 + POLICY.lease + 0.5, False)):
        b = Builder()
        b.strike(INJECT, "pause-1", "pause", inflight=[("j", 1, "worker-1")])
        b.strike(HEAL, "pause-1", "pause")
        b.dispatch("j")
        b.probe()
        b.attempt("j", 998.0, 999.5, "retrying", 1, "lease_lost", stopped=stopped)
        b.attempt("j", 1000.0015, 1003.0, "completed", 2, stopped=1003.0, worker="worker-2")
        result = check_retries(b.build(), POLICY)
        assert result.validity is (Validity.VALID if valid else Validity.INVALID), stopped


def test_the_collectors_carry_each_attempts_stop() -> None:
    rows = TableRows(attempts=[AttemptRow(1, "j", 1, "worker-1", 10.0, 12.5),
                               AttemptRow(2, "j", 2, "worker-2", 12.0)],
                     effects=[], outcomes=[OutcomeRow("j", 1, "worker-1", "retrying",
                                                      "lease_lost", 11.0)])
    attempts = [o for o in table_observations(rows) if o.f == "attempt"]
    assert attempts == [
        attempt_record("j", at=10.0, ended=11.0, status="retrying", reason="lease_lost",
                       attempt=1, attempt_id=1, worker="worker-1", stopped=12.5),
        attempt_record("j", at=12.0, attempt=2, attempt_id=2, worker="worker-2"),
    ]
