"""The scenario runner's own mechanics, on the real stack with the reference worker."""

from __future__ import annotations

from harness import history as h
from harness.checkers import Validity
from harness.contract import db_write, job


def test_drain_waits_until_duplicate_copies_have_left_the_queue(chaos):
    chaos.start_workers(1)
    finished = job("d1", db_write())
    chaos.dispatch(finished)
    assert chaos.drain()
    chaos.kill_worker(0)  # nobody consumes any more
    chaos.dispatch(finished)  # a duplicate of a finished job, left on the queue
    assert chaos.drain(deadline=0.3) is False
    drains = [op for op in chaos.recorder.history() if op.f == h.DRAIN and op.type == "info"]
    assert drains[-1].value["queued"] == 1 and drains[-1].value["pending"] == 0


def test_duplicate_of_a_finished_job_is_consumed_before_the_verdict(chaos):
    chaos.start_workers(1)
    finished = job("d2", db_write())
    chaos.dispatch(finished)
    assert chaos.drain()
    chaos.dispatch(finished)
    assert chaos.drain()
    assert chaos.queued() == 0
    assert chaos.finish().validity is Validity.VALID
