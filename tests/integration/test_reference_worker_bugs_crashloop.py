"""Bug switches that let a crash loop run past the allowed tries: the plans of
scenarios/test_crash_loops.py, played on a reference worker with the switch on, fail for the
right reason (``retry_bound`` on the poison job, and nothing else).
"""

from __future__ import annotations

import dataclasses

from harness import history as h
from harness.contract import crash, db_write, email, job, sleep
from harness.nemesis import kill_host, plan
from harness.run.judge import Judgement
from harness.run.run import ChaosRun

PLAIN = [job(f"plain-{i}", db_write(), sleep(0.05), email()) for i in range(6)]


def _with_bug(chaos: ChaosRun, name: str) -> None:
    spec = chaos.world.worker
    chaos.world.worker = dataclasses.replace(spec, env={**spec.env,
                                                        "REFERENCE_WORKER_BUGS": name})


def _failures(judgement: Judgement) -> set[tuple[str, object]]:
    return {(a.kind, a.job) for a in judgement.result.anomalies if a.severity == "failure"}


def test_reclaim_not_counted_lets_a_job_that_kills_its_worker_loop_forever(chaos):
    chaos.tune(lease=0.8)  # as the scenario does
    _with_bug(chaos, "reclaim_not_counted")
    poison = job("host-killer", db_write(), sleep(chaos.policy.job_timeout * 0.8))
    judgement = chaos.play(plan(2, [poison, *PLAIN],
                                kill_host("host-killer", down=chaos.policy.lease / 4)))
    assert _failures(judgement) == {("retry_bound", "host-killer")}, judgement.text
    kills = [s for s in judgement.history.fault_spans() if s.kind == "kill_host"]
    assert len(kills) > chaos.policy.max_tries, "the reaper never let the loop end"
    reasons = {op.value.get("reason") for op in judgement.history.ops(h.ATTEMPT)
               if op.value["job"] == "host-killer"}
    assert "lease_lost" in reasons


def test_unbounded_retries_lets_a_job_that_hard_exits_run_forever(chaos):
    _with_bug(chaos, "unbounded_retries")
    poison = job("exit-0", db_write(), crash(times=100))
    judgement = chaos.play(plan(2, [poison, *PLAIN]))
    assert _failures(judgement) >= {("retry_bound", "exit-0")}, judgement.text
    assert {kind for kind, _ in _failures(judgement)} <= {"retry_bound", "stuck"}, judgement.text
