"""Crash loops: poison jobs that take down whatever runs them, on every attempt.

Guards against the crash loop that never ends: a job whose process dies on every attempt (a
segfaulting extension, a job that exhausts the memory of its whole container, an in-process
worker with no fork between the job and itself) must be dead-lettered after exactly the
allowed tries, each attempt recorded, while the jobs beside it complete. A reliable fetch
makes this hard: the job of a crashed worker is reclaimed by someone else's reaper, and a
reclaim that does not count the attempt that died with its worker (Sidekiq Pro's super_fetch
before it counted recoveries, sidekiq/sidekiq#3400 and #4633) runs the job again and again,
taking down one worker after another, forever.
"""

from __future__ import annotations

from typing import Any

from harness.contract import crash, db_write, email, job, sleep
from harness.history import ATTEMPT, OUTCOME, History
from harness.nemesis import kill_host, plan
from harness.nemesis.events import Plan
from harness.run import RunPolicy

ALWAYS = 100  # crash(times=ALWAYS): more attempts than any policy allows


def crash_step_plan(workers: int, n_jobs: int) -> Plan:
    """Jobs whose child process hard-exits on every attempt, beside ordinary jobs."""
    poison = [job(f"exit-{i}", db_write(), crash(times=ALWAYS)) for i in range(2)]
    plain = [job(f"plain-{i}", db_write(), sleep(0.05), email()) for i in range(n_jobs // 2)]
    return plan(workers, [*poison, *plain])


def host_killer_plan(policy: RunPolicy, workers: int, n_jobs: int) -> Plan:
    """One job that SIGKILLs the worker running it at each attempt, beside ordinary jobs; its
    steps would complete if its host lived (so a kill that missed would show as a completion)."""
    poison = job("host-killer", db_write(), sleep(policy.job_timeout * 0.8))
    plain = [job(f"plain-{i}", db_write(), sleep(0.05), email()) for i in range(n_jobs // 2)]
    return plan(workers, [poison, *plain], kill_host("host-killer", down=policy.lease / 4))


def test_a_job_whose_every_attempt_hard_exits_is_dead_lettered(chaos, jobchaos_profile):
    p = jobchaos_profile
    judgement = chaos.check(crash_step_plan(p.workers, p.jobs))
    for job_id in ("exit-0", "exit-1"):
        assert_dead_after_every_try(judgement.history, job_id, chaos.policy.max_tries, "killed")


def test_a_job_that_kills_its_worker_is_dead_lettered_after_max_tries(chaos, jobchaos_profile):
    p = jobchaos_profile
    # A short lease: every try of a crash loop waits for the killed worker's lease to expire
    # (a declared lease is kept: the scenario only runs longer).
    chaos.prefer(lease=0.8)
    judgement = chaos.check(host_killer_plan(chaos.policy, p.workers, p.jobs))
    h = judgement.history
    # Each attempt died with its worker and was ended by a reaper; the last one dead-lettered.
    assert_dead_after_every_try(h, "host-killer", chaos.policy.max_tries, "lease_lost")
    struck = sorted((s.inflight[0]["attempt_id"], s.target) for s in h.fault_spans()
                    if s.kind == "kill_host")
    attempts = sorted((a["attempt_id"], a["worker"]) for a in _attempts(h, "host-killer"))
    assert struck == attempts, "each attempt was struck once, by its own kill"


def assert_dead_after_every_try(h: History, job_id: str, max_tries: int, reason: str) -> None:
    """The history shows ``job_id`` attempted exactly ``max_tries`` times, every attempt
    ended for ``reason``, and the job dead: the checkers would also accept fewer tries or a
    completion, which would leave the scenario proving nothing."""
    attempts = _attempts(h, job_id)
    assert sorted(a["attempt"] for a in attempts) == list(range(1, max_tries + 1)), attempts
    assert {a.get("reason") for a in attempts} == {reason}, attempts
    outcomes = [op.value for op in h.of_job(job_id) if op.f == OUTCOME]
    assert [o["status"] for o in outcomes] == ["retrying"] * (max_tries - 1) + ["dead"], outcomes


def _attempts(h: History, job_id: str) -> list[dict[str, Any]]:
    return [op.value for op in h.of_job(job_id) if op.f == ATTEMPT]
