"""Readiness and supervision on the real stack: the harness waits for every worker's ready
row before the nemesis strikes, a worker that exits before it is ready is a start-up error,
and one that exits by itself mid-run is restarted, as a supervisor would, and judged
(``exited``) instead of ending the test without a verdict."""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.checkers import Validity
from harness.contract import db_write, job, sleep
from harness.history import LIFE, History
from harness.nemesis import after, kill, plan
from harness.run.supervisor import BACKOFF_FIRST
from harness.run.world import REFERENCE_PROBE, WorkerSpec
from harness.services.workers import REFERENCE_WORKER, WorkerStartError
from reference_worker.testing import bugs_env
from scenarios.test_redis_link import cut_off_plan

SLOW_START = (sys.executable, str(Path(__file__).parent / "workers" / "slow_start.py"))


def lives(h: History, worker: str) -> list[dict[str, Any]]:
    return sorted((op.value for op in h.ops(LIFE) if op.value["worker"] == worker),
                  key=lambda v: v["at"])


def test_the_nemesis_strikes_only_once_every_worker_is_ready(chaos):
    """Workers that load for a second before they consume: a kill planned for the moment the
    nemesis starts lands after both wrote their ready row, not while they were loading."""
    chaos.world.worker = WorkerSpec(argv=SLOW_START, probe_argv=REFERENCE_PROBE,
                                    env={"SLOW_START": "1.0"})
    # Long enough for the killed worker's next process to load and be ready before the end.
    jobs = [job(f"slow-{i}", db_write(), sleep(0.4)) for i in range(8)]
    judgement = chaos.check(plan(2, jobs, kill(0, after(at=0.0))))
    h = judgement.history
    [strike] = [s for s in h.fault_spans() if s.kind == "kill"]
    first, second = lives(h, "worker-1")[:2]
    assert strike.start - first["at"] >= 1.0, "the kill landed while the worker was loading"
    assert first["ready"] - first["at"] >= 1.0 and strike.start >= first["ready"]
    assert all(v["ready"] <= strike.start for v in lives(h, "worker-2")[:1])
    # The restarted process was not waited for, but its own ready signal is recorded.
    assert second["ready"] - second["at"] >= 1.0


def test_a_worker_that_exits_before_it_is_ready_is_a_start_up_error(chaos):
    chaos.world.worker = WorkerSpec(
        argv=(sys.executable, "-c", "import sys, time; time.sleep(0.6); print('no config');"
                                    " sys.exit(3)"))
    started = time.monotonic()
    with pytest.raises(WorkerStartError, match=r"exited with code 3 [\d.]+ s after it "
                                               r"started, before it was ready") as caught:
        chaos.start_workers(1)
    assert time.monotonic() - started < 10
    assert "no config" in str(caught.value) and "Fix:" in str(caught.value)
    assert chaos.world.pool is None


def test_a_worker_that_exits_on_a_link_error_is_restarted_and_judged(chaos):
    """The reference worker with ``exit_on_link_error``: its own Redis link goes down, its
    process exits; the harness restarts it (with a backoff while the link is still down),
    the run ends in a verdict, and the verdict names the exits."""
    chaos.world.worker = WorkerSpec(argv=REFERENCE_WORKER, probe_argv=REFERENCE_PROBE,
                                    env=bugs_env("exit_on_link_error"))
    judgement = chaos.play(cut_off_plan(chaos))
    result, h = judgement.result, judgement.history
    assert result.validity is Validity.INVALID, judgement.text
    assert {a.kind for a in result.anomalies if a.severity == "failure"} == {"exited"}, (
        judgement.text)
    exits = result.of_kind("exited")
    assert all(a.detail.startswith("worker-1's process exited on its own with code 1")
               for a in exits), judgement.text
    assert "faults active then: down on redis" in exits[0].detail
    assert "exited" in judgement.text  # the verdict a person reads shows it
    mine = lives(h, "worker-1")
    died = [v for v in mine if "ended" in v and "signalled" not in v]
    assert len(died) == len(exits) >= 1
    # Each exit was followed by a restart, no sooner than the supervisor's backoff.
    for before, after_ in itertools.pairwise(mine):
        if before in died:
            assert after_["at"] - before["ended"] >= BACKOFF_FIRST * 0.9, mine
    assert "ended" not in mine[-1] or "signalled" in mine[-1], "the last process ran to the end"
    # Nothing was lost: the jobs the exits dropped were recovered after their leases.
    assert not result.of_kind("lost") and not result.of_kind("stuck"), judgement.text
