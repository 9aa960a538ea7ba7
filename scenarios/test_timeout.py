"""Timeout: jobs that outlive the job timeout are killed, and every kill is recorded.

Guards against the most common silent loss in PHP and Python job runners: the worker process
is killed on timeout and its ``failed()`` hook never runs (Laravel's documented behaviour for
``$timeout``), so the job is neither completed nor failed: it simply vanishes. Jobs that busy
the CPU without yielding must be killed just the same. And against the timeout that never
fires (Laravel without the pcntl extension): a hung job holds its worker for as long as it
hangs (``overran``, judged against the declared timeout and its granularity).
"""

from __future__ import annotations

from harness.contract import cpu, db_write, job, sleep
from harness.nemesis import plan


def test_jobs_past_the_timeout_end_recorded(chaos, jobchaos_profile):
    p = jobchaos_profile
    t = chaos.policy.job_timeout
    # Longer than any attempt may run (the ``overran`` bound), so a timeout that never fires
    # shows; a worker that enforces it kills these at ``t`` all the same.
    too_long = chaos.policy.for_checkers().timeout_bound_s + t
    jobs = [job("sleeps-too-long", db_write(), sleep(too_long)),
            job("spins-too-long", cpu(too_long)),
            *[job(f"in-time-{i}", db_write(), sleep(t * 0.1)) for i in range(p.jobs)]]
    chaos.check(plan(p.workers, jobs))
