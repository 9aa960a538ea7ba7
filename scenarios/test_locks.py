"""Locks: a uniqueness lock held by a worker that dies expires within its bound.

Guards against the lock with no expiry: a unique or without-overlapping job whose worker is
killed mid-job keeps its lock forever, so every later job with the same key is skipped or
blocked, silently, until someone deletes the key by hand.
"""

from __future__ import annotations

from harness.contract import db_write, job, sleep
from harness.nemesis import after, dispatch, kill, plan


def test_lock_of_a_killed_holder_expires(chaos):
    t = chaos.policy.job_timeout
    holder = job("report-1", db_write(), sleep(t * 0.6), db_write(), unique_key="report")
    # The same key again, once the holder died: each may run only once its lock has expired.
    later = [job(f"report-{i}", db_write(), unique_key="report") for i in range(2, 5)]
    chaos.check(plan(2, [holder, *later],
                     kill("busy", after(effects=1)),  # dies holding the "report" lock
                     *[dispatch(j.id, after(effects=1)) for j in later]))
