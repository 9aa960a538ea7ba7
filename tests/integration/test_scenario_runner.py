"""The scenario runner's own mechanics, on the real stack with the reference worker: faults
pair in the history, strikes record what they interrupted, the policy is one object, and the
drain waits for duplicate copies."""

from __future__ import annotations

import pytest

from harness import history as h
from harness.checkers import Validity
from harness.contract import db_write, job, sleep
from harness.nemesis import after, dispatch, kill, kill_job, link_fault, pause, plan, signal


def test_every_fault_pairs_its_inject_with_its_heal_under_one_id(chaos):
    jobs = [job(f"p-{i}", db_write(), sleep(0.3), db_write()) for i in range(6)]
    judgement = chaos.play(plan(2, jobs,
                                kill("busy", after(effects=1)),
                                pause(0, after(effects=3), seconds=0.2),
                                link_fault("latency", "postgres", seconds=0.2, ms=20),
                                signal(1, after(effects=5))))
    spans = judgement.history.fault_spans()
    assert [s.kind for s in spans] == ["kill", "pause", "latency", "signal"]
    assert all(s.heal is not None for s in spans), [s.label() for s in spans]
    assert len({s.fault for s in spans}) == 4
    # Worker faults name the worker they struck, not a link.
    injects = [op.value for op in judgement.history.ops(h.INJECT)]
    assert all(str(v.get("target", v.get("link"))).startswith("worker-")
               for v in injects if v["kind"] != "latency")
    assert judgement.valid, judgement.text


def test_a_strike_records_the_attempts_it_interrupted(chaos):
    jobs = [job("victim", db_write(), sleep(1.0))]
    judgement = chaos.play(plan(1, jobs, kill_job(0, after(effects=1))))
    [inject] = [op.value for op in judgement.history.ops(h.INJECT)]
    first = min((op.value for op in judgement.history.ops(h.ATTEMPT)), key=lambda v: v["at"])
    assert inject["params"]["inflight"] == [{"job": "victim", "attempt": 1, "worker": "worker-1",
                                             "attempt_id": first["attempt_id"]}]
    assert inject["params"]["pids"], "the job's process was found and killed"
    assert judgement.valid, judgement.text


def test_kill_busy_waits_for_a_worker_running_an_attempt(chaos):
    # The job is sent while both workers are frozen for a second: none is busy when the kill
    # comes; it must wait for one rather than strike an idle worker.
    jobs = [job("late", db_write(), sleep(1.0))]
    judgement = chaos.play(plan(2, jobs, pause(0, seconds=1.0), pause(1, seconds=1.0),
                                dispatch("late"), kill("busy")))
    [inject] = [op.value for op in judgement.history.ops(h.INJECT) if op.value["kind"] == "kill"]
    [running] = inject["params"]["inflight"]
    assert (running["job"], running["attempt"], running["worker"]) == (
        "late", 1, inject["target"])
    assert judgement.valid, judgement.text
    assert "interrupted nothing" not in judgement.text


def test_the_verdict_notes_a_strike_that_interrupted_nothing(chaos):
    judgement = chaos.play(plan(1, [job("done", db_write())], kill(0, after(finished=1))))
    assert judgement.valid, judgement.text
    assert ("note: kill on worker-1 [kill-1] interrupted nothing: no attempt was running on "
            "worker-1 when it struck") in judgement.text
    import json

    results = json.loads((chaos.artifacts / "results.json").read_text())
    assert results["idle_strikes"] == ["kill-1"]
    assert results["strikes"] == [{"fault": "kill-1", "kind": "kill", "target": "worker-1",
                                   "interrupted": []}]


def test_the_attempts_of_a_killed_process_are_not_in_flight_on_its_successor(chaos):
    # The second kill strikes the restarted worker while the first process's attempt still
    # waits for its lease to expire: that attempt was interrupted by the first kill only.
    jobs = [job("a", db_write(), sleep(0.5))]
    judgement = chaos.play(plan(1, jobs, kill(0, after(effects=1)), kill(0, after(effects=1))))
    first, second = (op.value for op in judgement.history.ops(h.INJECT))
    assert [r["job"] for r in first["params"]["inflight"]] == ["a"]
    assert second["params"]["inflight"] == []
    assert "kill on worker-1 [kill-2] interrupted nothing" in judgement.text
    assert judgement.valid, judgement.text


def test_the_policy_is_fixed_once_the_workers_start(chaos):
    chaos.tune(lease=1.5, job_timeout=0.7)
    pool = chaos.start_workers(1)
    assert pool.workers[0].env["CHAOS_LEASE"] == "1.5"
    with pytest.raises(RuntimeError, match="before the workers start"):
        chaos.tune(lease=9.0)
    judgement = chaos.play(plan(1, [job("a", db_write())]))
    assert judgement.result.validity is Validity.VALID
    import json

    checked = json.loads((chaos.artifacts / "results.json").read_text())["policy"]
    assert (checked["lease"], checked["job_timeout"]) == (1.5, 0.7)


def test_drain_waits_until_duplicate_copies_have_left_the_queue(chaos):
    chaos.start_workers(1)
    finished = job("d1", db_write())
    chaos.dispatch(finished)
    assert chaos.drain()
    chaos.world.workers[0].kill()  # nobody consumes any more
    chaos.world.struck.add("worker-1")
    chaos.dispatch(finished)  # a duplicate of a finished job, left on the queue
    assert chaos.drain(deadline=0.3) is False
    drains = [op for op in chaos.recorder.history() if op.f == h.DRAIN and op.type == "info"]
    assert drains[-1].value["queued"] == 1 and drains[-1].value["pending"] == 0
    chaos.finish()


def test_duplicate_of_a_finished_job_is_consumed_before_the_verdict(chaos):
    chaos.start_workers(1)
    finished = job("d2", db_write())
    chaos.dispatch(finished)
    assert chaos.drain()
    chaos.dispatch(finished)
    assert chaos.drain()
    assert chaos.gauges.queued({"d2"}) == 0
    assert chaos.finish().result.validity is Validity.VALID


@pytest.mark.parametrize("server", ["postgres", "redis"])
def test_a_server_restart_is_one_paired_fault_and_the_stack_serves_after_it(
        chaos, jobchaos_stack, server):
    from harness.nemesis import restart_server

    jobs = [job(f"r-{i}", db_write(), sleep(0.1)) for i in range(4)]
    judgement = chaos.play(plan(2, jobs, restart_server(server, after(effects=1), down=0.3)))
    [span] = judgement.history.fault_spans()
    assert (span.kind, span.target, span.heal is not None) == ("restart_server", server, True)
    # The session's stack works after it: a fresh database, a fresh Redis database.
    name, _ = jobchaos_stack.fresh_database()
    jobchaos_stack.drop_database(name)
    assert jobchaos_stack.fresh_redis_url()


def test_two_signals_to_one_worker_heal_with_one_restart(chaos):
    """The second SIGTERM reaches the worker while the first still has it shutting down (a
    cold shutdown); it exits once and is restarted once, and both signals heal."""
    chaos.tune(job_timeout=3.0, lease=4.0, shutdown_grace=2.0)
    jobs = [job(f"twice-{i}", db_write(), sleep(0.8)) for i in range(4)]
    judgement = chaos.check(plan(2, jobs, signal(0, after(attempts=1)),
                                 signal(0, after(attempts=1))))
    spans = [s for s in judgement.history.fault_spans() if s.kind == "signal"]
    assert len(spans) == 2 and all(s.heal is not None for s in spans)
    heals = [judgement.history.values[s.heal]["params"] for s in spans]
    assert sorted(bool(p.get("restarted_by")) for p in heals) == [False, True], heals
