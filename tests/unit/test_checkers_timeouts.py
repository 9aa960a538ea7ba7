"""Timeouts enforced (``overran``) and policies judged as the worker declared them."""

from __future__ import annotations

from pathlib import Path

import pytest
from jobchaos_histories import Builder

from harness.checkers import CHECKERS, Anomaly, Policy, Validity, check
from harness.checkers.timeouts import check_timeouts
from harness.history import HEAL, INJECT, History
from harness.profile import load
from harness.run.policy import SCENARIO_POLICY

POLICY = Policy(max_tries=3, job_timeout=1.0, lease=2.0)  # overran beyond 1.0 + 1.0 s slack
WITHOUT_TIMEOUTS = {name: c for name, c in CHECKERS.items() if name != "timeouts"}


def one_attempt(took: float, *, stopped: bool = True, reason: str | None = None,
                fault: bool = False) -> tuple[History, int]:
    """Job ``j``, one attempt from 1000.0 that took ``took`` s (to its recorded stop, or with
    ``stopped=False`` to its outcome row) and completed, unless a ``reason`` says how it
    failed (then it is dead)."""
    b = Builder()
    b.dispatch("j", ["db_write"])
    b.drain()
    b.probe()
    if fault:
        b.fault(INJECT, "f1", "postgres", "latency")
    end = 1000.0 + took
    status = "completed" if reason is None else "dead"
    i = b.attempt("j", 1000.0, end, status, 1, reason, stopped=end if stopped else None)
    if fault:
        b.fault(HEAL, "f1", "postgres", "latency")
    if reason is None:
        b.effect("j", 0, at=1000.1)
    else:
        b.state("j", "dead", reason=reason)
    b.outcome("j", status, reason=reason, at=end)
    return b.build(), i


def test_an_attempt_that_ran_past_the_timeout_overran_and_only_this_check_sees_it() -> None:
    h, i = one_attempt(3.0)
    result = check_timeouts(h, POLICY)
    assert result.validity is Validity.INVALID
    assert result.anomalies == (Anomaly(
        "overran", "j", (i,), "attempt 1 (worker-1) ran 3.00 s (start to stopped); the "
        "worker's timeout is 1 s (+1 s allowed to start, kill and reap the job): the timeout "
        "was not enforced"),)
    assert check(h, POLICY).validity is Validity.INVALID
    # Every other checker finds the run valid: without this check the hung job would pass.
    assert check(h, POLICY, WITHOUT_TIMEOUTS).validity is Validity.VALID


@pytest.mark.parametrize(("took", "granularity", "overran"), [
    (1.9, 0.0, False),  # killed at the timeout, reaped within the slack
    (2.1, 0.0, True),
    (2.9, 1.0, False),  # 1.5 s enforced in whole seconds: killed at 2 s
    (3.1, 1.0, True),
])
def test_the_bound_is_the_timeout_rounded_up_to_its_granularity_plus_slack(
        took: float, granularity: float, overran: bool) -> None:
    h, _ = one_attempt(took)
    policy = Policy(max_tries=3, job_timeout=1.0 if granularity == 0 else 1.5, lease=2.0,
                    timeout_granularity=granularity)
    result = check_timeouts(h, policy)
    assert result.counts["overran"] == int(overran), result.anomalies
    assert result.counts["durations_judged"] == 1


def test_without_a_recorded_stop_the_workers_own_outcome_row_is_the_end() -> None:
    h, _ = one_attempt(3.0, stopped=False, reason="timeout")
    assert check_timeouts(h, POLICY).counts["overran"] == 1


def test_a_reapers_lease_lost_row_is_no_end_of_the_attempt() -> None:
    h, _ = one_attempt(3.0, stopped=False, reason="lease_lost")
    result = check_timeouts(h, POLICY)
    assert result.validity is Validity.VALID
    assert (result.counts["durations_judged"], result.counts["durations_unjudged"]) == (0, 1)


def test_an_attempt_during_a_fault_is_not_judged() -> None:
    h, _ = one_attempt(3.0, fault=True)
    result = check_timeouts(h, POLICY)
    assert result.validity is Validity.VALID
    assert result.counts["durations_unjudged"] == 1


# -- the one-try policy, judged as declared ---------------------------------------------------


def dead_after_one_try() -> History:
    """A job that failed on its first try and was dead-lettered at once."""
    b = Builder()
    b.dispatch("j", [{"op": "fail"}])
    b.drain()
    b.probe()
    b.attempt("j", 1000.0, 1000.1, "dead", 1, stopped=1000.1)
    b.outcome("j", "dead", reason="exception", at=1000.1)
    b.state("j", "dead", reason="exception")
    return b.build()


def test_dead_after_one_try_is_right_for_a_worker_that_declares_one_try(tmp_path: Path) -> None:
    profile_path = tmp_path / "one-try.toml"
    profile_path.write_text("[policy]\nmax_tries = 1\n")
    declared = load(profile_path).apply(SCENARIO_POLICY).for_checkers()
    h = dead_after_one_try()
    assert check(h, declared).validity is Validity.VALID
    # The scenario policy (3 tries), as the worker would be judged without its profile.
    default = check(h, SCENARIO_POLICY.for_checkers())
    assert default.validity is Validity.INVALID
    [anomaly] = default.anomalies
    assert anomaly.kind == "unaccounted_failure" and "after 1 of 3 tries" in anomaly.detail
