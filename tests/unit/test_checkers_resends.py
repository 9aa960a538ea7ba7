"""The ``once_unless_indeterminate`` guarantee: a repeated email is allowed only when the
earlier send was indeterminate, and the verdict says which fault made it so."""

from __future__ import annotations

from typing import Any

from jobchaos_histories import Builder

from harness.checkers import Policy, Validity, check_effects
from harness.checkers.model import Anomaly, CheckResult
from harness.history import HEAL, INJECT
from harness.run import SCENARIO_POLICY

STRICT = Policy(guarantees={"db_write": "exactly_once", "email": "once_unless_indeterminate"})
LOOSE = Policy(guarantees={"db_write": "exactly_once", "email": "at_least_once"})
STEPS = ["email", {"op": "fail", "times": 1}]  # sends, then fails on the first attempt
T0 = 1010.0  # attempts start here, far from the builder's first ops


class Job:
    """Job ``a``: attempt 1 sends and fails, attempt 2 sends again and completes."""

    def __init__(self, *, first: dict[str, Any] | None = None, tagged: bool = True,
                 second_worker: str = "worker-1") -> None:
        self.b = b = Builder()
        b.dispatch("a", STEPS)
        self.first = {"at": T0, "ended": T0 + 0.2, "status": "retrying", "n": 1,
                      "reason": "exception", "worker": "worker-1"} | (first or {})
        self.second_worker = second_worker
        self.tagged = tagged

    def observe(self) -> tuple[int, int, int, int]:
        """The two attempts and the two messages (message 1 at T0 + 0.1, 2 at T0 + 0.6)."""
        b = self.b
        b.t = max(b.t, T0 - 1000.0 + 2.0)  # observations come after the run
        a1 = b.attempt("a", **self.first)
        a2 = b.attempt("a", T0 + 0.5, T0 + 0.7, "completed", 2, worker=self.second_worker)
        m1 = b.effect("a", 0, "email", at=T0 + 0.1, attempt=1 if self.tagged else None)
        m2 = b.effect("a", 0, "email", at=T0 + 0.6, attempt=2 if self.tagged else None)
        b.outcome("a", at=T0 + 0.7)
        return a1, a2, m1, m2

    def fault(self, at: float, seconds: float, fault: str, target: str, kind: str,
              params: dict[str, Any] | None = None) -> int:
        self.b.t = at - 1000.0
        inject = self.b.fault(INJECT, fault, target, kind, params)
        self.b.t = at + seconds - 1000.0
        self.b.fault(HEAL, fault, target, kind)
        return inject


def only_duplicate(result: CheckResult) -> Anomaly:
    [a] = result.of_kind("duplicated")
    assert result.counts["duplicated"] == 1
    return a


def test_a_repeat_with_no_fault_near_the_earlier_send_fails() -> None:
    j = Job()
    j.fault(T0 - 8.0, 1.0, "reset-1", "smtp", "reset_peer")  # long before: no excuse
    a1, a2, m1, m2 = j.observe()
    result = check_effects(j.b.build(), STRICT)
    a = only_duplicate(result)
    assert result.validity is Validity.INVALID
    assert (a.severity, a.job) == ("failure", "a")
    assert {a1, a2, m1, m2} <= set(a.ops)
    assert a.detail == (
        f"step 0 email sent again by attempt 2 on worker-1 (#{m2}) after a determinate send "
        f"#{m1} by attempt 1 on worker-1: no SMTP fault near it, and that attempt ended "
        "retrying (exception) with no worker or database fault while it ran")


def test_untagged_messages_are_attributed_by_time() -> None:
    j = Job(tagged=False)
    j.observe()
    a = only_duplicate(check_effects(j.b.build(), STRICT))
    assert "by attempt 2 on worker-1" in a.detail and "by attempt 1 on worker-1:" in a.detail


def test_at_least_once_still_tolerates_every_repeat() -> None:
    j = Job()
    j.observe()
    j.b.effect("a", 0, "email", at=T0 + 0.65, attempt=2)  # even twice from one attempt
    result = check_effects(j.b.build(), LOOSE)
    assert result.validity is Validity.VALID
    assert [(x.severity, x.detail) for x in result.of_kind("duplicated")] == [
        ("info", "step 0 email happened 3 times (at least once: tolerated)")]


def test_a_repeat_after_an_smtp_fault_at_the_receipt_is_allowed_and_names_it() -> None:
    j = Job()
    inject = j.fault(T0 + 0.1, 0.05, "reset_peer-3", "smtp", "reset_peer")
    a1, _, m1, m2 = j.observe()
    result = check_effects(j.b.build(), STRICT)
    a = only_duplicate(result)
    assert result.validity is Validity.VALID
    assert a.severity == "info" and {inject, m1, m2, a1} <= set(a.ops)
    assert a.detail == (
        f"step 0 email sent again by attempt 2 on worker-1 (#{m2}), allowed: the earlier send "
        f"#{m1} by attempt 1 on worker-1 was indeterminate: reset_peer on smtp [reset_peer-3] "
        "at or after its receipt")


def test_an_smtp_fault_after_the_attempt_ended_does_not_excuse_it() -> None:
    j = Job()
    j.fault(T0 + 1.5, 0.5, "down-1", "smtp", "down")  # the attempt ended at T0 + 0.2
    j.observe()
    assert only_duplicate(check_effects(j.b.build(), STRICT)).severity == "failure"


def test_a_repeat_after_the_sending_attempt_was_killed_is_allowed_and_names_the_kill() -> None:
    # Killed after the server accepted the message: no outcome, the reaper reran the job.
    j = Job(first={"ended": None, "status": None, "reason": None})
    inject = j.fault(T0 + 0.12, 0.3, "kill-1", "worker-1", "kill",
                     {"inflight": [{"job": "a", "attempt": 1, "worker": "worker-1"}]})
    j.observe()
    result = check_effects(j.b.build(), STRICT)
    a = only_duplicate(result)
    assert result.validity is Validity.VALID
    assert a.severity == "info" and inject in a.ops
    assert a.detail.endswith(
        "was indeterminate: kill on worker-1 [kill-1] struck attempt 1 on worker-1 while it "
        "ran, which has no outcome (its process died)")


def test_an_attempt_that_died_explains_the_repeat_even_without_a_nemesis_fault() -> None:
    j = Job(first={"reason": "memory"})  # its own allocation killed it
    j.observe()
    a = only_duplicate(check_effects(j.b.build(), STRICT))
    assert a.severity == "info"
    assert a.detail.endswith("was indeterminate: attempt 1 on worker-1 ended retrying (memory)")


def test_a_lease_lost_attempt_names_the_faults_around_it() -> None:
    j = Job(first={"reason": "lease_lost"})
    inject = j.fault(T0 + 0.05, 1.0, "down-2", "redis", "down")
    j.observe()
    a = only_duplicate(check_effects(j.b.build(), STRICT))
    assert a.severity == "info" and inject in a.ops
    assert a.detail.endswith("ended retrying (lease_lost) (faults while it ran: down on redis "
                             "[down-2])")


def test_a_database_fault_while_the_attempt_ran_explains_the_repeat() -> None:
    # The record of the send could not be written: the step failed and the retry sent again.
    j = Job()
    inject = j.fault(T0 + 0.11, 0.5, "down-4", "postgres", "down")
    j.observe()
    a = only_duplicate(check_effects(j.b.build(), STRICT))
    assert a.severity == "info" and inject in a.ops
    assert "down on postgres [down-4] struck attempt 1 on worker-1 while it ran" in a.detail


def test_a_fault_on_another_worker_or_link_does_not_excuse_it() -> None:
    j = Job()
    j.fault(T0 + 0.1, 0.3, "kill-1", "worker-2", "kill")
    j.fault(T0 + 0.1, 0.3, "latency-2", "redis", "latency")
    j.observe()
    assert only_duplicate(check_effects(j.b.build(), STRICT)).severity == "failure"


def test_a_stale_attempt_that_repeats_a_send_made_alongside_it_is_allowed() -> None:
    # Attempt 1 on worker-1 is paused past its lease before sending; attempt 2 on worker-2
    # sends and records; attempt 1 wakes up and sends too.
    b = Builder()
    b.dispatch("a", ["email"])
    b.t = T0 + 0.05 - 1000.0
    inject = b.fault(INJECT, "pause-1", "worker-1", "pause")
    b.t = T0 + 3.0 - 1000.0
    b.fault(HEAL, "pause-1", "worker-1", "pause")
    b.attempt("a", T0, T0 + 3.2, "retrying", 1, reason="lease_lost")
    b.attempt("a", T0 + 2.5, T0 + 2.7, "completed", 2, worker="worker-2")
    first = b.effect("a", 0, "email", at=T0 + 2.6, attempt=2)
    b.effect("a", 0, "email", at=T0 + 3.1, attempt=1)
    b.outcome("a", at=T0 + 2.7)
    a = only_duplicate(check_effects(b.build(), STRICT))
    assert a.severity == "info" and inject in a.ops
    assert f"the earlier send #{first} by attempt 2 on worker-2 was indeterminate: the " \
           "repeat ran alongside it and pause on worker-1 [pause-1] struck attempt 1" in a.detail


def test_without_attempts_a_repeat_is_undecided() -> None:
    b = Builder()
    b.dispatch("a", ["email"])
    b.effect("a", 0, "email", at=T0)
    b.effect("a", 0, "email", at=T0 + 1)
    b.outcome("a", at=T0 + 1)
    result = check_effects(b.build(), STRICT)
    assert result.validity is Validity.UNKNOWN
    assert only_duplicate(result).severity == "unknown"


def test_each_repeat_is_judged_by_the_send_just_before_it() -> None:
    # Three sends: the first was cut by an SMTP fault (allowed), the second was not.
    b = Builder()
    b.dispatch("a", ["email", {"op": "fail", "times": 2}])
    b.t = T0 + 0.1 - 1000.0
    b.fault(INJECT, "reset-1", "smtp", "reset_peer")
    b.fault(HEAL, "reset-1", "smtp", "reset_peer")
    b.t = T0 + 5 - 1000.0
    for n in (1, 2, 3):
        at = T0 + 2 * (n - 1)
        b.attempt("a", at, at + 0.2, "completed" if n == 3 else "retrying", n)
        b.effect("a", 0, "email", at=at + 0.1, attempt=n)
    result = check_effects(b.build(), STRICT)
    assert sorted(a.severity for a in result.of_kind("duplicated")) == ["failure", "info"]
    [bad] = [a for a in result.of_kind("duplicated") if a.severity == "failure"]
    assert "by attempt 3 on worker-1 (#" in bad.detail
    assert "after a determinate send #" in bad.detail and "by attempt 2 on worker-1:" in bad.detail


def test_failures_are_sampled_before_allowed_repeats() -> None:
    b = Builder()
    jobs = [f"j{k}" for k in range(4)]
    for job in jobs:
        b.dispatch(job, ["email"])
    b.t = T0 + 5 - 1000.0
    for k, job in enumerate(jobs):
        died = k > 0  # only j0's repeat is unexplained
        b.attempt(job, T0, None if died else T0 + 0.2, None if died else "retrying", 1)
        b.attempt(job, T0 + 1, T0 + 1.2, "completed", 2)
        b.effect(job, 0, "email", at=T0 + 0.1, attempt=1)
        b.effect(job, 0, "email", at=T0 + 1.1, attempt=2)
    result = check_effects(b.build(), Policy(guarantees=STRICT.guarantees, sample_limit=1))
    assert result.counts["duplicated"] == 4
    assert [(a.job, a.severity) for a in result.anomalies] == [("j0", "failure")]


def test_scenarios_hold_email_to_once_unless_indeterminate() -> None:
    assert SCENARIO_POLICY.for_checkers().guarantee("email") == "once_unless_indeterminate"
    declared = SCENARIO_POLICY.tuned(guarantees={"email": "at_least_once"}).for_checkers()
    assert dict(declared.guarantees) == {"db_write": "exactly_once", "email": "at_least_once"}
    assert Policy().guarantee("email") == "at_least_once"  # the checkers' own default
