"""One worker cut off from Redis while the others work on: the job it held is reclaimed and
rerun elsewhere, and when the link heals the cut-off worker neither completes it a second time
nor puts the finished job back on the queue.

Guards against the zombie worker behind a partition (a flapping NIC, a firewall or security
group change, a NAT table flushed on one host): its job keeps running while the queue, hearing
no heartbeat, hands the job to another worker; back online, the first worker records its late
result and acknowledges anyway (no fencing: it never asks whether the lease is still its own),
so the job is completed twice, or a finished job is retried. A fault on every worker's link at
once can never show this: nobody would be left to reclaim and rerun.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.contract import db_write, job, sleep
from harness.history import History
from harness.nemesis import Plan, after, link_fault, plan

pytestmark = pytest.mark.jobchaos_needs("retries")  # the job is rerun elsewhere

WORK = 2.0  # seconds a job sleeps: well past a lease (0.8 s) plus a reaper pass
LEASE = 0.8
TIMEOUT = 3.0


def cut_off_plan(busy_workers: int, lease: float) -> Plan:
    """``busy_workers`` workers each mid-job and one idle (it reaps and reruns); the busy
    worker that started last loses its own Redis link for three leases."""
    jobs = [job(f"cut-{i}", db_write(), sleep(WORK)) for i in range(busy_workers)]
    return plan(busy_workers + 1, jobs,
                link_fault("down", "redis", after(effects=busy_workers), seconds=lease * 3,
                           worker="busy"))


def struck(history: History, kind: str) -> dict[str, Any]:
    """The params of the one inject op of ``kind``."""
    injects = [history.values[i] for i in history.indices("inject")
               if history.values[i]["kind"] == kind]
    assert len(injects) == 1, injects
    return dict(injects[0]["params"])


def outcomes(history: History, job_id: str) -> list[dict[str, Any]]:
    return [history.values[i] for i in history.indices("outcome")
            if history.values[i]["job"] == job_id]


def test_one_worker_cut_off_past_its_lease(chaos, jobchaos_profile):
    chaos.tune(lease=LEASE, job_timeout=TIMEOUT)
    busy = jobchaos_profile.workers
    judgement = chaos.check(cut_off_plan(busy, chaos.policy.lease))
    h = judgement.history
    cut = struck(h, "down")
    # Only the cut worker's own Redis link was struck, while it ran a job.
    assert len(cut["links"]) == 1 and "_w" in cut["links"][0], cut
    assert [a["worker"] for a in cut["inflight"]] == [cut["worker"]], cut
    held = cut["inflight"][0]["job"]
    rows = outcomes(h, held)
    # Given up (ended by a reaper's lease_lost, or killed by the cut worker's own fence when
    # its lease went unrenewed) and rerun elsewhere to completion.
    assert any(r["status"] == "retrying" and r.get("reason") in ("lease_lost", "killed")
               and r["worker"] == cut["worker"] for r in rows), rows
    assert [r["worker"] != cut["worker"] for r in rows if r["status"] == "completed"] == [True]
    # The others kept working: every other job completed on its first try.
    others = [j.id for j in chaos.plan.jobs if j.id != held] if chaos.plan else []
    assert others and all([r["status"] for r in outcomes(h, j)] == ["completed"] for j in others)
