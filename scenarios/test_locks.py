"""Locks: a uniqueness lock held by a worker that dies expires within its bound.

Guards against the lock with no expiry: a unique or without-overlapping job whose worker is
killed mid-job keeps its lock forever, so every later job with the same key is skipped or
blocked, silently, until someone deletes the key by hand.
"""

from __future__ import annotations

from harness.contract import db_write, job, sleep
from harness.scenario import assert_valid


def test_lock_of_a_killed_holder_expires(chaos):
    chaos.start_workers(2)
    t = chaos.policy.job_timeout
    chaos.dispatch(job("report-1", db_write(), sleep(t * 0.6), db_write(), unique_key="report"))
    chaos.wait_for_effects(1)
    chaos.kill_worker(chaos.busy_worker())  # dies holding the "report" lock
    chaos.restart_dead()
    # The same key again: it may run only once the dead holder's lock has expired.
    chaos.dispatch(*[job(f"report-{i}", db_write(), unique_key="report") for i in range(2, 5)])
    chaos.drain()
    assert_valid(chaos.finish(), chaos.render())
