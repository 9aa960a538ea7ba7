"""Poison jobs: always-failing jobs are dead-lettered with a reason after exactly the allowed
tries, with backoff between them.

Guards against "unlimited retries, no backoff" (a retry storm that hammers a struggling
upstream and never ends), and against failures that are retried forever or dropped without a
failure record.
"""

from __future__ import annotations

from harness.contract import db_write, fail, job
from harness.scenario import assert_valid


def test_always_failing_jobs_are_dead_lettered_after_max_tries(chaos, jobchaos_profile):
    chaos.start_workers(jobchaos_profile.workers)
    chaos.dispatch(
        *[job(f"poison-{i}", fail()) for i in range(3)],
        *[job(f"flaky-{i}", fail(times=1), db_write()) for i in range(jobchaos_profile.jobs // 2)],
    )
    chaos.drain()
    assert_valid(chaos.finish(), chaos.render())
