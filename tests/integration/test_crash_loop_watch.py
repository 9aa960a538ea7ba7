"""The ``kill_host`` watch ends with its job: a job already terminal when the watch starts is
never struck, and the plan does not wait for it."""

from __future__ import annotations

import time

from harness.contract import db_write, job
from harness.nemesis import after, kill_host, plan
from harness.nemesis.crashloop import bound


def test_a_watch_on_a_finished_job_strikes_nothing(chaos):
    started = time.monotonic()
    judgement = chaos.play(plan(1, [job("done", db_write())],
                                kill_host("done", after(finished=1))))
    assert [s for s in judgement.history.fault_spans() if s.kind == "kill_host"] == []
    assert time.monotonic() - started < bound(chaos.policy, 0.0), "the watch ended at once"
    assert judgement.valid, judgement.text
