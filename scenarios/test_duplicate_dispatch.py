"""Duplicate dispatch: the same job id dispatched twice, sequentially and concurrently, and a
producer that retries after its acknowledgement was lost.

Guards against the double run: a producer that retries a push whose reply it never saw (or a
scheduler that fires twice) puts the same job on the queue twice, and a worker without dedupe
runs it twice: two emails, two completions, two charges.
"""

from __future__ import annotations

import pytest

from harness.contract import db_write, email, job, sleep
from harness.nemesis import after, dispatch, link_fault, plan, redispatch

pytestmark = pytest.mark.jobchaos_needs("dedupe")

ONCE = {"email": "exactly_once"}  # each job here is dispatched twice but must run once


def test_same_id_dispatched_twice_concurrently(chaos, jobchaos_profile):
    p = jobchaos_profile
    chaos.tune(guarantees=ONCE)
    jobs = [job(f"twin-{i}", db_write(), sleep(0.05), email()) for i in range(p.jobs)]
    # Back to back: both copies are queued before either runs.
    chaos.check(plan(p.workers, jobs, *[redispatch(j.id) for j in jobs]))


def test_same_id_dispatched_again_after_it_finished(chaos, jobchaos_profile):
    p = jobchaos_profile
    chaos.tune(guarantees=ONCE)
    jobs = [job(f"again-{i}", db_write(), email()) for i in range(p.jobs)]
    # A scheduler firing twice, a replayed webhook: every job finished, then sent again.
    chaos.check(plan(p.workers, jobs, *[redispatch(j.id, after(finished=len(jobs)))
                                        for j in jobs]))


def test_producer_retry_after_lost_acknowledgement(chaos):
    chaos.tune(guarantees=ONCE)
    jobs = [job(f"retried-{i}", db_write(), email()) for i in range(3)]
    timeout = chaos.policy.job_timeout / 4
    cut = len(jobs) * timeout + 0.2  # the pushes land, their replies do not
    chaos.check(plan(2, jobs,
                     link_fault("blackhole", "redis", seconds=cut, stream="downstream"),
                     *[dispatch(j.id, through_proxy=True, timeout=timeout) for j in jobs],
                     # the producer retries each unacknowledged push once the link is back
                     *[redispatch(j.id, after(at=cut + 0.1), through_proxy=True)
                       for j in jobs]))
