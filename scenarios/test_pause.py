"""Pause a busy worker past its lease, then resume it: the job it held is rerun elsewhere and
must end completed once, not completed twice, nor completed and then put back on the queue.

Guards against the frozen worker (a stop-the-world GC pause, a VM paused or live-migrated, a
laptop lid, SIGSTOP from a debugger): its lease lapses, another worker reruns the job, and
when the frozen one wakes it carries on as if nothing happened, recording its late result and
acknowledging it without asking whether the job is still its own.

The pause freezes the worker's process group *and* each of its job processes (the reference
worker runs each attempt in a child with a process group of its own, which a group signal
alone would leave running), as a frozen VM would.
"""

from __future__ import annotations

import pytest

from harness.contract import db_write, fail, job, sleep
from harness.nemesis import Plan, after, pause, plan

pytestmark = pytest.mark.jobchaos_needs("retries")  # the job is rerun elsewhere

WORK = 1.0  # seconds a job sleeps before its first try fails (a flaky job)
LEASE = 0.8
TIMEOUT = 3.0


def pause_plan(busy_workers: int, lease: float) -> Plan:
    """``busy_workers`` workers each mid-job and one idle (it reaps and reruns); the busy
    worker that started last is frozen for four leases, longer than it takes to reclaim its
    job and rerun it (about a lease and a half, plus ``WORK``)."""
    jobs = [job(f"pause-{i}", db_write(), sleep(WORK), fail(times=1))
            for i in range(busy_workers)]
    return plan(busy_workers + 1, jobs,
                pause("busy", after(effects=busy_workers), seconds=lease * 4))


def test_busy_worker_paused_past_its_lease(chaos, jobchaos_profile):
    chaos.tune(lease=LEASE, job_timeout=TIMEOUT)
    judgement = chaos.check(pause_plan(jobchaos_profile.workers, chaos.policy.lease))
    h = judgement.history
    stop = [h.values[i]["params"] for i in h.indices("inject")
            if h.values[i]["kind"] == "pause"]
    assert len(stop) == 1
    # It struck mid-job: an attempt of the paused worker was in flight, its job process frozen.
    inflight = stop[0]["inflight"]
    assert len(inflight) == 1 and stop[0]["jobs"], stop[0]
    held, paused = inflight[0]["job"], inflight[0]["worker"]
    rows = [h.values[i] for i in h.indices("outcome") if h.values[i]["job"] == held]
    assert any(r["worker"] == paused and r.get("reason") == "lease_lost" for r in rows), rows
    assert [r["worker"] != paused for r in rows if r["status"] == "completed"] == [True], rows
