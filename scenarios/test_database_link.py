"""Database link: the PostgreSQL link goes down, black-holes, slows past the statement
timeout, resets mid-transaction, or closes idle connections, while jobs write their effects
and their status.

Guards against the double run and the lost status: a link that drops between the side effect
and the acknowledgement makes the job run again (so the effect must be idempotent), and a
status write that fails must not leave a job that is neither completed nor failed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from harness.contract import db_write, email, job, sleep
from harness.scenario import assert_valid

FAULTS: dict[str, Callable[[Any, float], Any]] = {
    "down": lambda link, window: link.down(),
    "blackhole": lambda link, window: link.blackhole(),
    "latency": lambda link, window: link.latency(int(window * 1000 / 2)),
    "reset_peer": lambda link, window: link.reset_peer(),
    "idle_close": lambda link, window: link.idle_close(int(window * 1000 / 4)),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_postgres_link_fault_during_effects_and_status_writes(chaos, jobchaos_profile, fault):
    chaos.start_workers(jobchaos_profile.workers)
    window = chaos.policy.lease * 0.75  # long enough to hit effects and status writes
    chaos.dispatch(*[job(f"db-{fault}-{i}", db_write(), sleep(0.05), email(), db_write())
                     for i in range(jobchaos_profile.jobs)])
    chaos.wait_for_effects(1)
    with FAULTS[fault](chaos.faults.postgres, window):
        chaos.hold(window)
    chaos.drain()
    assert_valid(chaos.finish(), chaos.render())
