"""Each checker on hand-built histories, valid and invalid, comparing the whole result."""

from __future__ import annotations

import pytest
from jobchaos_histories import Builder, run

from harness.checkers import (
    CHECKERS,
    Anomaly,
    Backoff,
    CheckResult,
    Policy,
    Validity,
    check,
    check_effects,
    check_locks,
    check_outcomes,
    check_queue,
    check_retries,
    compose,
)
from harness.history import History

POLICY = Policy(max_tries=3, backoff=Backoff(base=1.0, cap=4.0), job_timeout=1.0, lease=2.0)

V, U, I = Validity.VALID, Validity.UNKNOWN, Validity.INVALID  # noqa: E741


def queue_counts(**over: int) -> dict[str, int]:
    base = dict(dispatched=0, dispatches=0, acknowledged=0, indeterminate=0, dispatch_failed=0,
                completed=0, dead=0, dead_lettered=0, probe_available=1, lost=0, stuck=0,
                unresolved=0, unexpected=0, recovered=0)
    return base | over


def effect_counts(**over: int) -> dict[str, int]:
    return dict(effects=0, effects_expected=0, effects_missing=0, duplicated=0,
                unsuccessful_completion=0, unexpected=0) | over


def outcome_counts(**over: int) -> dict[str, int]:
    return dict(terminal_completed=0, terminal_dead=0, terminal_dead_lettered=0, regressed=0,
                unaccounted_failure=0, duplicated=0) | over


def retry_counts(**over: int) -> dict[str, int]:
    return dict(attempts=0, retried_jobs=0, retry_gaps_judged=0, retry_bound=0,
                hammering=0, overlapping=0, overlaps_judged=0, stops_unknown=0) | over


def two_jobs() -> Builder:
    """a: [db_write, email] in one try; b: [fail 1, db_write] in two, 1 s apart."""
    b = Builder()
    b.dispatch("a", ["db_write", "email"])  # 0 1
    b.dispatch("b", [{"op": "fail", "times": 1}, "db_write"])  # 2 3
    b.drain()  # 4 5
    b.probe()  # 6
    run(b, "a", ["db_write", "email"], start=1000.0)  # 7 attempt, 8 9 effects, 10 outcome
    run(b, "b", [{"op": "fail", "times": 1}, "db_write"], start=1000.1, failures=1)
    return b  # b: 11 12 attempts, 13 effect, 14 outcome


# --- valid and empty ------------------------------------------------------------------------


def test_a_correct_run_is_valid_in_every_checker() -> None:
    h = two_jobs().build()
    results = {name: c(h, POLICY) for name, c in CHECKERS.items()}
    assert results == {
        "queue": CheckResult("queue", V, (), queue_counts(
            dispatched=2, dispatches=2, acknowledged=2, completed=2)),
        "effects": CheckResult("effects", V, (), effect_counts(effects=3, effects_expected=3)),
        "outcomes": CheckResult("outcomes", V, (), outcome_counts(terminal_completed=2)),
        "retries": CheckResult("retries", V, (), retry_counts(
            attempts=3, retried_jobs=1, retry_gaps_judged=1, overlaps_judged=1)),
        "locks": CheckResult("locks", V, (), {"locks_held": 0, "lock_leaked": 0}),
        "workers": CheckResult("workers", V, (), {"workers": 0, "stalled": 0,
                                                  "dropped_on_shutdown": 0, "slow_shutdown": 0,
                                                  "exited": 0, "not_ready": 0}),
        "timeouts": CheckResult("timeouts", V, (), {"durations_judged": 3,
                                                    "durations_unjudged": 0, "overran": 0}),
    }
    composed = check(h, POLICY)
    assert composed.validity is V
    assert composed.children == tuple(results.values())
    assert composed.anomalies == ()


def test_an_empty_history_is_unknown_not_valid() -> None:
    result = check(History([], [], [], [], [], []), POLICY)
    assert result.validity is U
    assert result.notes[0] == "the history is empty"
    assert check_queue(History([], [], [], [], [], []), POLICY) == CheckResult(
        "queue", U, (), queue_counts(probe_available=0),
        ("no dispatch was acknowledged: nothing to decide",))


def test_nothing_acknowledged_is_unknown() -> None:
    b = Builder()
    b.dispatch("a", result="info")
    b.probe()
    assert check_queue(b.build(), POLICY).validity is U


# --- queue: lost, stuck, unresolved, unexpected, recovered ----------------------------------


def test_lost_acknowledged_then_nowhere() -> None:
    b = two_jobs()
    b.dispatch("c")  # 15 16
    b.attempt("c", 1000.3, None, None)  # 17: started, its worker died
    assert check_queue(b.build(), POLICY) == CheckResult("queue", I, (
        Anomaly("lost", "c", (6, 15, 16, 17),
                "acknowledged, no terminal outcome, not in the system"),
    ), queue_counts(dispatched=3, dispatches=3, acknowledged=3, completed=2, lost=1))


def test_stuck_still_queued_or_locked_after_the_drain() -> None:
    b = two_jobs()
    b.dispatch("c")  # 15 16
    b.dispatch("d")  # 17 18
    b.state("c", "scheduled")  # 19
    b.lock("unique:d", ttl=5.0, job="d")  # 20
    result = check_queue(b.build(), POLICY)
    assert result == CheckResult("queue", I, (
        Anomaly("stuck", "c", (5, 15, 16, 19),
                "no terminal outcome; still scheduled after the drain"),
        Anomaly("stuck", "d", (5, 17, 18, 20),
                "no terminal outcome; still locked (unique:d) after the drain"),
    ), queue_counts(dispatched=4, dispatches=4, acknowledged=4, completed=2, stuck=2))


def test_without_a_probe_lost_and_stuck_are_unresolved() -> None:
    b = Builder()
    b.dispatch("a")  # 0 1
    b.dispatch("b")  # 2 3
    b.probe(False, "no probe configured")  # 4
    run(b, "a", ["db_write"], start=1000.0)  # 5 6 7
    assert check_queue(b.build(), POLICY) == CheckResult("queue", U, (
        Anomaly("unresolved", "b", (2, 3, 4),
                "no terminal outcome; lost or stuck (no probe configured)", "unknown"),
    ), queue_counts(dispatched=2, dispatches=2, acknowledged=2, completed=1, unresolved=1,
                    probe_available=0))


def test_unexpected_outcomes_of_jobs_never_dispatched() -> None:
    b = two_jobs()
    b.dispatch("x", result="fail")  # 15 16: definitely not dispatched
    b.outcome("ghost")  # 17
    b.attempt("x", 1000.5)  # 18
    result = check_queue(b.build(), POLICY)
    assert result == CheckResult("queue", I, (
        Anomaly("unexpected", "x", (15, 16, 18),
                "observed in the worker's system, dispatched, but every dispatch failed"),
        Anomaly("unexpected", "ghost", (17,), "observed in the worker's system, never dispatched"),
    ), queue_counts(dispatched=3, dispatches=3, acknowledged=2, dispatch_failed=1,
                    completed=3, unexpected=2))


def test_recovered_an_indeterminate_dispatch_that_ran_is_not_a_failure() -> None:
    b = Builder()
    b.dispatch("a", result="info")  # 0 1
    b.dispatch("b", result=None)  # 2: the dispatcher died before the ack
    b.dispatch("c", result="info")  # 3 4: never ran: may never have been enqueued
    b.probe()  # 5
    run(b, "a", ["db_write"], start=1000.0)  # 6 7 8
    run(b, "b", ["db_write"], start=1000.0)  # 9 10 11
    assert check_queue(b.build(), POLICY) == CheckResult("queue", V, (
        Anomaly("recovered", "a", (0, 1, 6, 7, 8), "dispatch outcome unknown, but the job ran",
                "info"),
        Anomaly("recovered", "b", (2, 9, 10, 11), "dispatch outcome unknown, but the job ran",
                "info"),
    ), queue_counts(dispatched=3, dispatches=3, indeterminate=3, completed=2, recovered=2))


def test_an_indeterminate_dispatch_left_in_the_queue_is_stuck() -> None:
    b = two_jobs()
    b.dispatch("c", result="info")  # 15 16
    b.state("c", "queued")  # 17
    assert check_queue(b.build(), POLICY).anomalies == (
        Anomaly("stuck", "c", (15, 16, 17),
                "dispatch outcome unknown; still queued after the drain"),)


# --- effects: duplicated, unsuccessful_completion, unexpected -------------------------------


def test_duplicated_db_write_fails_duplicated_email_is_counted() -> None:
    b = two_jobs()
    b.effect("a", 0)  # 15: db_write twice
    b.effect("a", 1, "email")  # 16: email twice
    result = check_effects(b.build(), POLICY)
    assert result == CheckResult("effects", I, (
        Anomaly("duplicated", "a", (0, 1, 8, 9, 15, 16),
                "step 0 db_write happened 2 times (exactly once)"),
        Anomaly("duplicated", "a", (8, 9, 15, 16),
                "step 1 email happened 2 times (at least once: tolerated)", "info"),
    ), effect_counts(effects=5, effects_expected=3, duplicated=2))
    # Under a stricter policy the email duplicate fails too.
    strict = Policy(guarantees={"db_write": "exactly_once", "email": "exactly_once"})
    assert [a.severity for a in check_effects(b.build(), strict).anomalies] == ["failure"] * 2


def test_email_only_duplicates_leave_the_check_valid() -> None:
    b = two_jobs()
    b.effect("a", 1, "email")
    result = check_effects(b.build(), POLICY)
    assert (result.validity, result.counts["duplicated"]) == (V, 1)


def test_unsuccessful_completion_completed_without_its_effects() -> None:
    b = Builder()
    b.dispatch("a", ["db_write", "email"])  # 0 1
    b.probe()  # 2
    b.attempt("a", 1000.0, 1000.1)  # 3
    b.effect("a", 0)  # 4: the email never arrived
    b.outcome("a")  # 5
    assert check_effects(b.build(), POLICY) == CheckResult("effects", I, (
        Anomaly("unsuccessful_completion", "a", (0, 1, 4, 5),
                "reported completed, but no effect of step 1 email"),
    ), effect_counts(effects=1, effects_expected=2, effects_missing=1,
                     unsuccessful_completion=1))


def test_a_dead_job_may_miss_effects() -> None:
    b = Builder()
    b.dispatch("a", ["db_write", {"op": "fail", "times": None}, "email"])
    b.probe()
    b.effect("a", 0)
    b.outcome("a", "dead", reason="exception")
    assert check_effects(b.build(), POLICY).validity is V


def test_unexpected_effects() -> None:
    b = two_jobs()
    b.effect("a", 2)  # 15: a has no step 2
    b.effect("b", 0)  # 16: b's step 0 is `fail`
    b.effect("a", 0, "email")  # 17: a's step 0 is a db_write
    b.effect("ghost", 0)  # 18: never dispatched
    result = check_effects(b.build(), POLICY)
    assert result == CheckResult("effects", I, (
        Anomaly("unexpected", "a", (0, 1, 8, 9, 15, 17),
                "effects step 0 email, step 2 db_write: its steps have no such effect"),
        Anomaly("unexpected", "b", (2, 3, 13, 16),
                "effects step 0 db_write: its steps have no such effect"),
        Anomaly("unexpected", "ghost", (18,),
                "effects step 0 db_write: the job was never dispatched"),
    ), effect_counts(effects=7, effects_expected=3, unexpected=3))


# --- outcomes: regressed, unaccounted_failure, duplicated -----------------------------------


def test_regressed_terminal_outcomes_later_contradicted() -> None:
    b = two_jobs()
    b.outcome("a", "dead", reason="timeout", at=2000.0)  # 15: completed at 1000.01, then
    b.state("b", "dead")  # 16: completed, but dead-lettered
    b.dispatch("c")  # 17 18
    b.outcome("c", "dead", reason="exception", at=1000.0)  # 19
    b.outcome("c", "completed", at=1001.0)  # 20
    b.state("c", "dead")  # 21
    b.dispatch("d")  # 22 23
    b.attempt("d", 1000.0, 1000.1)  # 24
    b.outcome("d", at=1000.2)  # 25
    b.attempt("d", 1000.5, 1000.6)  # 26: ran again after completing
    b.state("d", "queued")  # 27: and is back in the queue
    result = check_outcomes(b.build(), POLICY)
    assert result == CheckResult("outcomes", I, (
        Anomaly("regressed", "a", (10, 15), "reported completed, then dead"),
        Anomaly("regressed", "c", (19, 20), "reported dead, then completed"),
        Anomaly("regressed", "b", (14, 16), "reported completed, but dead-lettered"),
        Anomaly("regressed", "c", (20, 21), "reported completed, but dead-lettered"),
        Anomaly("regressed", "d", (25, 27), "reported completed, but queued again"),
        Anomaly("regressed", "d", (25, 26), "reported completed, then ran again"),
    ), outcome_counts(terminal_completed=4, terminal_dead=2, terminal_dead_lettered=2,
                      regressed=6))
    # Each job is named once per contradiction; none is also an unaccounted failure.


def test_the_same_outcome_twice_is_duplicated() -> None:
    b = two_jobs()
    b.outcome("a")  # 15
    assert check_outcomes(b.build(), POLICY) == CheckResult("outcomes", I, (
        Anomaly("duplicated", "a", (10, 15), "completed reported 2 times"),
    ), outcome_counts(terminal_completed=2, duplicated=1))


def test_unaccounted_failures() -> None:
    b = Builder()
    for job in "abcd":
        b.dispatch(job, [{"op": "fail", "times": None}])  # 0..7
    b.probe()  # 8
    # a: three tries, failed, dead-lettered: accounted for.
    run(b, "a", [], start=1000.0, failures=3, status="dead")  # 9 10 11, 12, 13
    # b: dead-lettered, no dead outcome reported.
    for n in range(3):
        b.attempt("b", 1000.0 + 2 * n, 1000.1 + 2 * n, "retrying", n + 1)  # 14 15 16
    b.state("b", "dead", reason="timeout")  # 17
    # c: reported dead after one of three tries, and never ran again.
    b.attempt("c", 1000.0, 1000.1, "dead", 1)  # 18
    b.outcome("c", "dead", reason="exception", at=1000.2)  # 19
    b.state("c", "dead")  # 20
    # d: reported dead after three tries, but not dead-lettered.
    for n in range(3):
        b.attempt("d", 1000.0 + 2 * n, 1000.1 + 2 * n, "retrying" if n < 2 else "dead",
                  n + 1)  # 21 22 23
    b.outcome("d", "dead", reason="exception", at=1010.0)  # 24
    result = check_outcomes(b.build(), POLICY)
    assert result == CheckResult("outcomes", I, (
        Anomaly("unaccounted_failure", "b", (14, 15, 16, 17),
                "dead-lettered with no dead outcome reported (dead letter reason: timeout)"),
        Anomaly("unaccounted_failure", "c", (18, 19),
                "reported dead (exception) after 1 of 3 tries, and never ran again"),
        Anomaly("unaccounted_failure", "d", (8, 24), "reported dead, but not dead-lettered"),
    ), outcome_counts(terminal_dead=3, terminal_dead_lettered=3, unaccounted_failure=3))
    # A reason the policy calls final ends a job at once; no dead letter queue, no check.
    lenient = Policy(final_reasons=frozenset({"exception"}), dead_letter=False)
    assert [a.job for a in check_outcomes(b.build(), lenient).anomalies] == ["b"]


# --- retries: retry_bound, hammering --------------------------------------------------------


def test_retry_bound_more_attempts_than_allowed() -> None:
    b = Builder()
    b.dispatch("a")  # 0 1
    b.probe()  # 2
    run(b, "a", ["db_write"], start=1000.0, failures=3, gap=10.0)  # 3 4 5 6, 7, 8
    assert check_retries(b.build(), POLICY) == CheckResult("retries", I, (
        Anomaly("retry_bound", "a", (0, 1, 3, 4, 5, 6), "4 attempts, at most 3 allowed"),
    ), retry_counts(attempts=4, retried_jobs=1, retry_gaps_judged=3, retry_bound=1,
                    overlaps_judged=3))


def test_hammering_retries_sooner_than_the_backoff() -> None:
    # Backoff 1 s, 2 s, 4 s; tolerance 10% and 10 ms: retry n must wait 0.89, 1.79, 3.59 s.
    b = Builder()
    b.dispatch("a")  # 0 1
    b.dispatch("b")  # 2 3
    b.dispatch("c")  # 4 5
    b.probe()  # 6
    b.attempt("a", 1000.0, 1000.5, "retrying", 1)  # 7
    b.attempt("a", 1001.4, 1001.5, "retrying", 2)  # 8: 0.9 s after: fine
    b.attempt("a", 1002.5, 1003.0, "completed", 3)  # 9: 1.0 s after, needed 1.79 s
    b.attempt("b", 1000.0, 1005.0, "completed", 1)  # 10: recorded after ...
    b.attempt("b", 1002.0, 1002.5, "completed", 2)  # 11: ... the retry began: not judged
    b.attempt("c", 1000.0, None, None, 1)  # 12: the worker died: the lease decides
    b.attempt("c", 1000.2, 1000.3, "completed", 2)  # 13
    result = check_retries(b.build(), POLICY)
    assert result == CheckResult("retries", I, (
        Anomaly("hammering", "a", (8, 9),
                "retry 2 came 1.000 s after the failure; the backoff allows no less than "
                "1.790 s"),
    ), retry_counts(attempts=7, retried_jobs=3, retry_gaps_judged=2, hammering=1,
                    stops_unknown=7))


def test_jitter_and_cap_lower_the_floor() -> None:
    b = Builder()
    b.dispatch("a")
    b.probe()
    b.attempt("a", 1000.0, 1000.5, "retrying", 1)
    b.attempt("a", 1001.0, 1001.5, "completed", 2)  # 0.5 s after
    jittered = Policy(backoff=Backoff(base=1.0, jitter=0.5))
    assert check_retries(b.build(), jittered).validity is V
    assert check_retries(b.build(), Policy(backoff=Backoff(base=1.0))).validity is I


def test_without_attempt_records_retries_are_unknown() -> None:
    b = Builder()
    b.dispatch("a")
    b.probe()
    b.effect("a", 0)
    b.outcome("a")
    result = check_retries(b.build(), POLICY)
    assert (result.validity, result.notes) == (
        U, ("no attempt records: retry bound and backoff cannot be checked",))


# --- locks ----------------------------------------------------------------------------------


def test_lock_leaked_locks_that_outlive_their_bound() -> None:
    b = two_jobs()
    b.lock("unique:a", ttl=None, job="a")  # 15: never expires
    b.lock("overlap:b", ttl=600.0, job="b")  # 16: set for longer than the bound
    b.lock("unique:x", ttl=1.0, age=100.0)  # 17: already held too long
    b.lock("unique:y", ttl=1.0, age=0.5)  # 18: fine
    bound = POLICY.lock_bound_s
    assert bound == 3 * 2.0 + 1.0 + 2.0 + 1.0
    assert check_locks(b.build(), POLICY) == CheckResult("locks", I, (
        Anomaly("lock_leaked", "a", (7, 10, 15), "lock 'unique:a' never expires; its job "
                "completed"),
        Anomaly("lock_leaked", "b", (11, 12, 14, 16), "lock 'overlap:b' expires in 600.000 s, "
                "beyond the 10.000 s bound; its job completed"),
        Anomaly("lock_leaked", None, (17,), "lock 'unique:x' held for 100.000 s, beyond the "
                "10.000 s bound"),
    ), {"locks_held": 4, "lock_leaked": 3})


def test_locks_cannot_be_seen_without_a_probe() -> None:
    b = Builder()
    b.dispatch("a")
    b.probe(False)
    assert check_locks(b.build(), POLICY) == CheckResult(
        "locks", U, (), {"locks_held": 0, "lock_leaked": 0},
        ("no probe: locks held cannot be seen",))


# --- composition, errors, samples -----------------------------------------------------------


def test_compose_invalid_beats_unknown_beats_valid() -> None:
    v, u, i = (CheckResult("v", V, counts={"n": 1}), CheckResult("u", U, notes=("why",)),
               CheckResult("i", I, (Anomaly("lost", "a", (1,), "x"),), {"n": 2, "lost": 1}))
    assert compose([v, u]).validity is U
    assert compose([v, u, i]) == CheckResult("all", I, i.anomalies, {"n": 3, "lost": 1},
                                             ("u: why",), None, (v, u, i))
    assert compose([v]).validity is V
    assert compose([]).validity is U


def test_a_checker_that_raises_is_unknown_never_a_pass() -> None:
    def broken(history: History, policy: Policy) -> CheckResult:
        raise KeyError("job")

    result = check(two_jobs().build(), POLICY, {"queue": CHECKERS["queue"], "broken": broken})
    assert result.validity is U
    assert result.children[1].validity is U
    assert result.error is not None and result.error.startswith("broken: KeyError: 'job' (at ")
    # A malformed op makes the checker that reads it unknown, with the error.
    b = two_jobs()
    b.op("ok", "observer", "outcome", {"job": "a"})  # no status
    result = check(b.build(), POLICY)
    assert result.validity is U
    assert "KeyError: 'status'" in (result.error or "")


def test_samples_are_capped_counts_are_complete() -> None:
    b = Builder()
    for n in range(30):
        b.dispatch(f"j{n}")
    b.probe()
    result = check_queue(b.build(), Policy(sample_limit=4))
    assert (result.validity, result.counts["lost"], len(result.anomalies)) == (I, 30, 4)


# --- policy ---------------------------------------------------------------------------------


def test_policy_derives_the_drain_deadline_and_lock_bound() -> None:
    assert Backoff(base=0.5, cap=3.0).delay(1) == 0.5
    assert [Backoff(base=0.5, cap=3.0).delay(n) for n in (2, 3, 4, 5)] == [1.0, 2.0, 3.0, 3.0]
    assert Backoff(base=1.0, jitter=0.25).min_delay(2) == 1.5
    p = Policy(max_tries=3, backoff=Backoff(base=1.0, cap=10.0), job_timeout=5.0, lease=2.0,
               grace=0.5)
    assert p.drain_deadline_s == 3 * 5.0 + 1.0 + 2.0 + 0.5
    assert p.lock_bound_s == p.drain_deadline_s
    assert Policy(drain_deadline=9.0, lock_bound=4.0).lock_bound_s == 4.0
    assert p.to_dict()["guarantees"] == {"db_write": "exactly_once", "email": "at_least_once"}
    with pytest.raises(ValueError, match="max_tries"):
        Policy(max_tries=0)
    with pytest.raises(ValueError, match="unknown guarantees"):
        Policy(guarantees={"email": "twice"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="jitter"):
        Backoff(jitter=2.0)


def test_policy_for_a_worker_configured_by_the_contract() -> None:
    from harness.contract import BACKOFF_JITTER
    from harness.contract import Policy as Knobs

    knobs = Knobs(job_timeout=1.0, max_tries=4, backoff_base=0.1, backoff_cap=0.8, lease=1.5,
                  lock_ttl=3.0)
    p = Policy.for_worker(knobs, jitter=BACKOFF_JITTER, sample_limit=3)
    assert p == Policy(max_tries=4, backoff=Backoff(base=0.1, cap=0.8, jitter=0.1),
                       job_timeout=1.0, lease=1.5, lock_bound=3.0, sample_limit=3,
                       shutdown_grace=3.0)
    assert [p.backoff.delay(n) for n in (1, 2, 3, 4, 5)] == [
        knobs.backoff(n) for n in (1, 2, 3, 4, 5)]


def test_steps_may_say_op_kind_or_just_the_name() -> None:
    b = Builder()
    b.dispatch("a", [{"op": "db_write"}, {"kind": "email"}, "db_write"])
    b.probe()
    b.attempt("a", 1000.0, 1000.1)
    b.effect("a", 0)
    b.effect("a", 1, "email")
    b.outcome("a")
    result = check_effects(b.build(), POLICY)
    assert (result.validity, result.counts["effects_expected"], result.counts[
        "unsuccessful_completion"]) == (I, 3, 1)
    assert result.anomalies[0].detail == "reported completed, but no effect of step 2 db_write"
