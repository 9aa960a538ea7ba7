"""Locks: jobs with the same unique key never run at the same time, and the lock of a holder
that dies expires within its bound.

Guards against the lock with no expiry: a unique or without-overlapping job whose worker is
killed mid-job keeps its lock forever, so every later job with the same key is skipped or
blocked, silently, until someone deletes the key by hand. And against the lock that is not
there at all: jobs with the same key run side by side.
"""

from __future__ import annotations

import pytest

from harness.contract import db_write, job, sleep
from harness.history import ATTEMPT, History
from harness.nemesis import after, dispatch, kill, plan
from harness.nemesis.events import WORKER_KILLS

pytestmark = pytest.mark.jobchaos_needs("locks")


def test_lock_of_a_killed_holder_expires(chaos):
    t = chaos.policy.job_timeout
    holder = job("report-1", db_write(), sleep(t * 0.6), db_write(), unique_key="report")
    # The same key again while the holder runs: each may run only once the holder is gone and
    # its lock has expired.
    later = [job(f"report-{i}", db_write(), unique_key="report") for i in range(2, 5)]
    judgement = chaos.check(plan(2, [holder, *later],
                                 *[dispatch(j.id, after(effects=1)) for j in later],
                                 # dies holding the "report" lock
                                 kill("busy", after(effects=1, delay=t * 0.25))))
    side_by_side = overlapping_holders(judgement.history)
    assert not side_by_side, (
        f"jobs with the same unique key ran at the same time: {side_by_side}. A worker without "
        "uniqueness locks declares locks = false in its worker profile")


def overlapping_holders(h: History) -> list[tuple[str, str]]:
    """Pairs of attempts (``job#attempt``) of different jobs that ran at the same time; an
    attempt runs from its start to its recorded stop, else the kill that found it in flight,
    else its outcome row (unknown: left out)."""
    killed = {(a["job"], a["attempt"], a["worker"]): s.start for s in h.fault_spans()
              if s.kind in WORKER_KILLS for a in s.inflight}
    runs = []
    for op in h.ops(ATTEMPT):
        v = op.value
        key = (v["job"], v["attempt"], v["worker"])
        end = v.get("stopped") or killed.get(key) or v.get("ended")
        if end is not None:
            runs.append((v["at"], end, f"{v['job']}#{v['attempt']}"))
    runs.sort()
    return [(a[2], b[2]) for n, a in enumerate(runs) for b in runs[n + 1:]
            if b[0] < a[1] and a[2].split("#")[0] != b[2].split("#")[0]]
