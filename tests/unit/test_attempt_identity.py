"""Attempts are told apart by their identity, never by their number: a library that
redelivers without counting (every run is "attempt 1", often on the same worker) runs two
attempts, not one, and only the overlap that really happened is reported."""

from __future__ import annotations

import time
from typing import Any

from jobchaos_histories import Builder

from harness.checkers import Anomaly, Backoff, Policy, Validity, check, check_effects
from harness.collectors import AttemptRow, OutcomeRow, TableRows, match_outcomes
from harness.collectors import table_observations as observations
from harness.history import ATTEMPT, HEAL, INJECT, NEMESIS, OBSERVER, History
from harness.nemesis import after, kill_host
from harness.nemesis.crashloop import CrashLoop

POLICY = Policy(max_tries=3, backoff=Backoff(base=0.2, cap=1.0), job_timeout=1.0, lease=2.0)
W1 = "worker-1"


def attempt(b: Builder, at: float, ended: float | None, status: str | None, *, ident: int,
            n: int = 1, stopped: float | None = None, worker: str = W1,
            reason: str | None = None) -> int:
    """An attempt op of job ``j``, as the collectors write it (a raw value, so that this
    module also runs against code that knows no ``attempt_id``)."""
    if status in ("retrying", "dead") and reason is None:
        reason = "exception"
    value = {"job": "j", "attempt": n, "attempt_id": ident, "worker": worker, "at": at,
             "ended": ended, "status": status, "reason": reason, "stopped": stopped}
    return b.op("ok", OBSERVER, ATTEMPT, {k: v for k, v in value.items() if v is not None})


def strike(b: Builder, phase: str, fault: str, kind: str, inflight: list[dict[str, Any]]
           ) -> int:
    return b.op("info", NEMESIS, phase, {"fault": fault, "target": W1, "kind": kind,
                                         "params": {"inflight": inflight}})


def redelivered(b: Builder, second: float, stopped: float) -> tuple[int, int]:
    """Job ``j`` run twice as "attempt 1" on worker-1: the first failed at 1000.5 and its
    process stopped at ``stopped``; the second started at ``second`` and completed."""
    b.dispatch("j")
    b.probe()
    first = attempt(b, 1000.0, 1000.5, "retrying", ident=7, stopped=stopped)
    again = attempt(b, second, second + 0.5, "completed", ident=8, stopped=second + 0.5)
    b.effect("j", 0, at=second + 0.1)
    b.outcome("j", at=second + 0.5)
    return first, again


def test_two_runs_numbered_1_one_after_the_other_are_two_attempts_and_valid() -> None:
    b = Builder()
    redelivered(b, second=1001.0, stopped=1000.5)
    result = check(b.build(), POLICY)
    assert result.validity is Validity.VALID, result.anomalies
    assert (result.counts["overlaps_judged"], result.counts["retry_gaps_judged"]) == (1, 1)


def test_two_runs_numbered_1_that_really_overlap_are_overlapping() -> None:
    b = Builder()
    first, again = redelivered(b, second=1001.0, stopped=1001.3)  # ran on past the rerun
    result = check(b.build(), POLICY)
    assert result.validity is Validity.INVALID
    assert result.of_kind("overlapping") == (Anomaly(
        "overlapping", "j", (first, again),
        "attempt 1 (worker-1, id 8) started 0.300 s before attempt 1 (worker-1, id 7) stopped"),)


def test_a_redelivery_sooner_than_the_backoff_is_hammering_whatever_its_number() -> None:
    b = Builder()
    redelivered(b, second=1000.51, stopped=1000.5)
    assert [a.kind for a in check(b.build(), POLICY).anomalies] == ["hammering"]


def test_a_kill_stops_only_the_attempt_it_names_by_identity() -> None:
    # The first run stopped on its own, with no record of it; the kill found the second one
    # in flight. Matched by number, the kill would also stop the first, after the second
    # began: a false overlap.
    b = Builder()
    b.t = 2.0  # the kill lands at ~1002.001, while the second run is in flight
    strike(b, INJECT, "kill-1", "kill", [{"job": "j", "attempt": 1, "attempt_id": 8, "worker": W1}])
    strike(b, HEAL, "kill-1", "kill", [])
    b.dispatch("j")
    b.probe()
    attempt(b, 1000.0, 1000.5, "retrying", ident=7)
    attempt(b, 1001.0, 1004.0, "retrying", ident=8, reason="lease_lost")
    attempt(b, 1004.5, 1005.0, "completed", ident=9, stopped=1005.0)
    b.effect("j", 0, at=1004.6)
    b.outcome("j", at=1005.0)
    result = check(b.build(), POLICY)
    assert result.validity is Validity.VALID, result.anomalies
    # The third run is judged against the kill's stop of the second; the first's stop is
    # not known.
    assert (result.counts["overlaps_judged"], result.counts["stops_unknown"]) == (1, 1)


def test_without_identities_a_strike_names_the_latest_run_started_before_it() -> None:
    # A history recorded before attempts had identities: the kill's in-flight entry names
    # (job, number, worker), which both runs share; it names the one running at the kill.
    b = Builder()
    b.t = 2.0
    strike(b, INJECT, "kill-1", "kill", [{"job": "j", "attempt": 1, "worker": W1}])
    strike(b, HEAL, "kill-1", "kill", [])
    b.dispatch("j")
    b.probe()
    for at, ended, status in ((1000.0, 1000.5, "retrying"), (1001.0, 1004.0, "retrying"),
                              (1004.5, 1005.0, "completed")):
        value = {"job": "j", "attempt": 1, "worker": W1, "at": at, "ended": ended,
                 "status": status} | ({} if status == "completed" else {"reason": "exception"})
        b.op("ok", OBSERVER, ATTEMPT, value | ({"stopped": 1005.0} if at > 1004 else {}))
    b.effect("j", 0, at=1004.6)
    b.outcome("j", at=1005.0)
    result = check(b.build(), POLICY)
    assert result.validity is Validity.VALID, result.anomalies
    assert (result.counts["overlaps_judged"], result.counts["stops_unknown"]) == (1, 1)


def test_a_kill_of_the_rerun_does_not_excuse_a_repeat_of_the_first_runs_determinate_send(
        ) -> None:
    # Run 7 sent the email and failed by an exception, with no fault near it: its send was
    # determinate. Run 8 (also "attempt 1") sent it again and was then killed. The kill names
    # run 8, not run 7: the repeat is a failure.
    policy = Policy(guarantees={"db_write": "exactly_once", "email": "once_unless_indeterminate"})
    b = Builder()
    b.dispatch("j", ["email", {"op": "fail", "times": 1}])
    b.t = 1.1
    strike(b, INJECT, "kill-1", "kill",
           [{"job": "j", "attempt": 1, "attempt_id": 8, "worker": W1}])
    strike(b, HEAL, "kill-1", "kill", [])
    b.t = 3.0
    attempt(b, 1000.0, 1000.2, "retrying", ident=7)
    attempt(b, 1001.0, 1003.0, "retrying", ident=8, reason="lease_lost")
    attempt(b, 1003.5, 1003.7, "completed", ident=9)
    b.effect("j", 0, "email", at=1000.1, attempt=1)
    b.effect("j", 0, "email", at=1001.05, attempt=1)
    b.outcome("j", at=1003.7)
    [dup] = check_effects(b.build(), policy).of_kind("duplicated")
    assert dup.severity == "failure", dup.detail


# -- the collectors: each outcome row ends its own attempt -----------------------------------

def rows(attempts: list[AttemptRow], outcomes: list[OutcomeRow]) -> TableRows:
    return TableRows(attempts=attempts, effects=[], outcomes=outcomes)


def test_outcomes_without_identity_end_sequential_runs_of_one_number_one_each() -> None:
    attempts = [AttemptRow(7, "j", 1, W1, 10.0, 10.5), AttemptRow(8, "j", 1, W1, 11.0, 11.5)]
    outcomes = [OutcomeRow("j", 1, W1, "retrying", "exception", 10.5),
                OutcomeRow("j", 1, W1, "completed", None, 11.5)]
    assert match_outcomes(attempts, outcomes) == [7, 8]
    ended = [(o.value["attempt_id"], o.value.get("ended"), o.value.get("status"),
              o.value.get("stopped")) for o in observations(rows(attempts, outcomes))
             if o.f == ATTEMPT]
    assert ended == [(7, 10.5, "retrying", 10.5), (8, 11.5, "completed", 11.5)]


def test_an_outcome_that_names_its_attempt_ends_that_one() -> None:
    attempts = [AttemptRow(7, "j", 1, W1, 10.0), AttemptRow(8, "j", 1, W1, 10.2)]
    outcomes = [OutcomeRow("j", 1, W1, "retrying", "exception", 10.5, attempt_id=7),
                OutcomeRow("j", 1, W1, "completed", None, 10.6)]  # no identity: the other
    assert match_outcomes(attempts, outcomes) == [7, 8]


def test_concurrent_runs_of_one_number_are_each_ended_once() -> None:
    attempts = [AttemptRow(7, "j", 1, W1, 10.0), AttemptRow(8, "j", 1, W1, 10.2)]
    outcomes = [OutcomeRow("j", 1, W1, "retrying", "exception", 10.5),
                OutcomeRow("j", 1, W1, "completed", None, 10.6)]
    # Which ended first cannot be told; both ended, and neither twice.
    assert sorted(match_outcomes(attempts, outcomes)) == [7, 8]


def test_an_outcome_never_ends_an_attempt_that_started_after_it() -> None:
    # A second row for the first run (a zombie's), written before the rerun began.
    attempts = [AttemptRow(7, "j", 1, W1, 10.0), AttemptRow(8, "j", 1, W1, 11.0)]
    outcomes = [OutcomeRow("j", 1, W1, "retrying", "exception", 10.5),
                OutcomeRow("j", 1, W1, "retrying", "lease_lost", 10.8),
                OutcomeRow("j", 1, "worker-2", "completed", None, 11.5)]  # another worker's
    assert match_outcomes(attempts, outcomes) == [7, None, None]


def test_redelivered_runs_read_back_as_two_attempts_and_judged_valid() -> None:
    attempts = [AttemptRow(7, "j", 1, W1, 1000.0, 1000.5), AttemptRow(8, "j", 1, W1, 1001.0,
                                                                       1001.5)]
    outcomes = [OutcomeRow("j", 1, W1, "retrying", "exception", 1000.5),
                OutcomeRow("j", 1, W1, "completed", None, 1001.5)]
    b = Builder()
    b.dispatch("j")
    b.probe()
    for obs in observations(rows(attempts, outcomes)):
        b.observe(obs)
    b.effect("j", 0, at=1001.1)
    history: History = b.build()
    result = check(history, POLICY)
    assert result.validity is Validity.VALID, result.anomalies


# -- the kill_host watch strikes each attempt once, by identity -------------------------------

class Readings:
    """What the gauges read for the watched job: its attempts, (id, number, worker, start,
    ended) each."""

    def __init__(self, *attempts: tuple[int, int, str, float, bool]) -> None:
        self.attempts = list(attempts)

    def terminal_jobs(self) -> set[str]:
        return set()

    def attempts_of(self, job_id: str) -> list[tuple[int, int, str, float, bool]]:
        return self.attempts


def test_a_crash_loop_strikes_a_redelivery_that_repeats_the_struck_attempts_number() -> None:
    loop = CrashLoop(kill_host("j", after()), until=time.monotonic() + 60)
    live = {W1: 100.0}
    readings = Readings((7, 1, W1, 101.0, False))
    [first] = loop.due(readings, live, lambda w: True)
    assert (first.attempt_id, first.as_inflight()) == (7, {"job": "j", "attempt": 1,
                                                           "attempt_id": 7, "worker": W1})
    loop.struck.add(first.attempt_id)
    # The worker restarted at 105 and got the job again, still "attempt 1".
    readings.attempts.append((8, 1, W1, 106.0, False))
    assert [a.attempt_id for a in loop.due(readings, {W1: 105.0}, lambda w: True)] == [8]
