"""Duplicate dispatch: the same job id dispatched twice, sequentially and concurrently, and a
producer that retries after its acknowledgement was lost.

Guards against the double run: a producer that retries a push whose reply it never saw (or a
scheduler that fires twice) puts the same job on the queue twice, and a worker without dedupe
runs it twice: two emails, two completions, two charges.
"""

from __future__ import annotations

from harness.contract import db_write, email, job, sleep
from harness.scenario import assert_valid

ONCE = {"email": "exactly_once"}  # each job here is dispatched twice but must run once


def test_same_id_dispatched_twice_concurrently(chaos, jobchaos_profile):
    chaos.start_workers(jobchaos_profile.workers)
    jobs = [job(f"twin-{i}", db_write(), sleep(0.05), email()) for i in range(jobchaos_profile.jobs)]
    for j in jobs:
        chaos.dispatch(j, j)  # back to back: both copies are queued before either runs
    chaos.drain()
    assert_valid(chaos.finish(guarantees=ONCE), chaos.render())


def test_same_id_dispatched_again_after_it_finished(chaos, jobchaos_profile):
    chaos.start_workers(jobchaos_profile.workers)
    jobs = [job(f"again-{i}", db_write(), email()) for i in range(jobchaos_profile.jobs)]
    chaos.dispatch(*jobs)
    chaos.drain()
    chaos.dispatch(*jobs)  # a scheduler firing twice, a replayed webhook
    chaos.wait_queue_empty()
    assert_valid(chaos.finish(guarantees=ONCE), chaos.render())


def test_producer_retry_after_lost_acknowledgement(chaos, jobchaos_profile):
    chaos.start_workers(jobchaos_profile.workers)
    jobs = [job(f"retried-{i}", db_write(), email()) for i in range(3)]
    with chaos.faults.redis.blackhole(stream="downstream"):  # the push lands, its reply does not
        chaos.dispatch(*jobs, through_proxy=True, timeout=chaos.policy.job_timeout / 4)
    chaos.dispatch(*jobs, through_proxy=True)  # the producer retries each unacknowledged push
    chaos.drain()
    assert_valid(chaos.finish(guarantees=ONCE), chaos.render())
