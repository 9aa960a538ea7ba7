"""Database link: the PostgreSQL link goes down, black-holes, slows past the statement
timeout, resets mid-transaction, or closes idle connections, while jobs write their effects
and their status.

Guards against the double run and the lost status: a link that drops between the side effect
and the acknowledgement makes the job run again (so the effect must be idempotent), and a
status write that fails must not leave a job that is neither completed nor failed.
"""

from __future__ import annotations

import pytest

from harness.contract import db_write, email, job, sleep
from harness.nemesis import after, link_fault, plan

FAULTS = ("down", "blackhole", "latency", "reset_peer", "idle_close")


@pytest.mark.parametrize("fault", FAULTS)
def test_postgres_link_fault_during_effects_and_status_writes(chaos, jobchaos_profile, fault):
    p = jobchaos_profile
    window = chaos.policy.lease * 0.75  # long enough to hit effects and status writes
    params = {"latency": {"ms": int(window * 1000 / 2)},
              "idle_close": {"ms": int(window * 1000 / 4)}}.get(fault, {})
    jobs = [job(f"db-{fault}-{i}", db_write(), sleep(0.05), email(), db_write())
            for i in range(p.jobs)]
    cut = link_fault(fault, "postgres", after(effects=1), seconds=window, **params)
    chaos.check(plan(p.workers, jobs, cut))
