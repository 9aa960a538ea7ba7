"""Redis link: the queue's link goes down or resets during fetch, acknowledgement and
heartbeat; a worker that stays up must resume consuming.

Guards against the worker that silently stops consuming after a connection error (its loop
died, the process is still up, the dashboard is green), and against jobs lost or left leased
when an acknowledgement or heartbeat is cut.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from harness.contract import db_write, job, sleep
from harness.scenario import assert_valid

FAULTS: dict[str, Callable[[Any], Any]] = {
    "down": lambda link: link.down(),
    "reset_peer": lambda link: link.reset_peer(),
    "blackhole": lambda link: link.blackhole(),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_redis_link_fault_then_consumption_resumes(chaos, jobchaos_profile, fault):
    chaos.start_workers(jobchaos_profile.workers)
    half = jobchaos_profile.jobs // 2
    chaos.dispatch(*[job(f"q-{fault}-{i}", db_write(), sleep(0.1)) for i in range(half)])
    chaos.wait_for_attempts(1)
    with FAULTS[fault](chaos.faults.redis):
        chaos.hold(chaos.policy.lease * 0.75)
    # Work dispatched after the heal proves the surviving workers consume again.
    chaos.dispatch(*[job(f"q-{fault}-after-{i}", db_write()) for i in range(half)])
    chaos.drain()
    assert_valid(chaos.finish(), chaos.render())
