"""Lease versus timeout: a job that runs longer than the lease is not run twice at once.

Guards against the lease shorter than the job (Laravel's ``retry_after`` below ``$timeout``,
an SQS visibility timeout shorter than the work): the queue believes the worker died and hands
the still-running job to a second worker, so it runs twice, concurrently (``overlapping``
attempts, and duplicated effects).
"""

from __future__ import annotations

from harness.contract import db_write, email, job, sleep
from harness.nemesis import Plan, plan
from harness.run import ChaosRun


def longer_than_the_lease(chaos: ChaosRun) -> Plan:
    """The job takes 2.5 leases; the heartbeat must keep it owned; the timeout allows it. One
    worker more than jobs stays idle, reaping: it would take over a lease that lapsed."""
    chaos.tune(lease=0.8, job_timeout=3.0, guarantees={"email": "exactly_once"})
    jobs = [job(f"long-{i}", db_write(), sleep(2.0), email()) for i in range(2)]
    return plan(3, jobs)


def test_job_longer_than_the_lease_runs_once(chaos):
    chaos.check(longer_than_the_lease(chaos))
