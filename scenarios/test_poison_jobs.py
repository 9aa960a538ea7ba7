"""Poison jobs: always-failing jobs are dead-lettered with a reason after exactly the allowed
tries, with backoff between them.

Guards against "unlimited retries, no backoff" (a retry storm that hammers a struggling
upstream and never ends), and against failures that are retried forever or dropped without a
failure record.
"""

from __future__ import annotations

import pytest

from harness.contract import db_write, fail, job
from harness.nemesis import plan

pytestmark = pytest.mark.jobchaos_needs("retries")  # the tries and the backoff between them


def test_always_failing_jobs_are_dead_lettered_after_max_tries(chaos, jobchaos_profile):
    p = jobchaos_profile
    # A backoff well above the time a worker takes to pick up a retry it may run at once, so a
    # retry without backoff stands out even on a loaded machine (a declared backoff is kept).
    chaos.prefer(backoff_base=0.4, backoff_cap=0.8)
    jobs = [*[job(f"poison-{i}", fail()) for i in range(3)],
            *[job(f"flaky-{i}", fail(times=1), db_write()) for i in range(p.jobs // 2)]]
    chaos.check(plan(p.workers, jobs))
