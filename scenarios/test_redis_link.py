"""Redis link: the queue's link goes down or resets during fetch, acknowledgement and
heartbeat; a worker that stays up must resume consuming.

Guards against the worker that silently stops consuming after a connection error (its loop
died, the process is still up, the dashboard is green), and against jobs lost or left leased
when an acknowledgement or heartbeat is cut.
"""

from __future__ import annotations

import pytest

from harness.contract import db_write, job, sleep
from harness.nemesis import after, dispatch, link_fault, plan
from harness.nemesis.events import Plan
from harness.run import ChaosRun

FAULTS = ("down", "reset_peer", "blackhole")


@pytest.mark.parametrize("fault", FAULTS)
def test_redis_link_fault_then_consumption_resumes(chaos, jobchaos_profile, fault):
    p = jobchaos_profile
    half = p.jobs // 2
    window = chaos.policy.lease * 0.75
    before = [job(f"q-{fault}-{i}", db_write(), sleep(0.1)) for i in range(half)]
    later = [job(f"q-{fault}-after-{i}", db_write()) for i in range(half)]
    # Work dispatched after the heal proves the surviving workers consume again (the fault
    # starts at the first attempt, a fraction of the window after the nemesis does).
    chaos.check(plan(p.workers, before + later,
                     link_fault(fault, "redis", after(attempts=1), seconds=window),
                     *[dispatch(j.id, after(at=window * 1.2)) for j in later]))


def test_a_worker_cut_off_resumes_consuming_after_the_heal(chaos):
    """One worker's own Redis link goes down while the other keeps working. After the heal
    the cut worker must take jobs again: work dispatched after the heal is long enough that
    one worker alone leaves jobs waiting past the consume bound (the ``stalled`` anomaly),
    while two share it well within it. A worker that exits on the link error instead is
    restarted, as a supervisor would, and judged (``exited``)."""
    chaos.check(cut_off_plan(chaos))


def cut_off_plan(chaos: ChaosRun) -> Plan:
    """The plan of the cut-off scenario (tunes ``chaos``'s policy)."""
    chaos.tune(job_timeout=0.8, lease=1.0)
    bound = chaos.policy.for_checkers().consume_bound_s
    window = 2.0
    before = [job(f"cut-{i}", db_write(), sleep(0.2)) for i in range(6)]
    # One worker alone needs 1.7 bounds for these; two need less than one.
    n = 10
    later = [job(f"cut-after-{i}", db_write(), sleep(1.7 * bound / n)) for i in range(n)]
    return plan(2, before + later,
                link_fault("down", "redis", after(attempts=1), seconds=window, worker=0),
                *[dispatch(j.id, after(at=window * 1.2)) for j in later])
