"""The workers checker on how worker processes ended and became ready: ``exited`` for a
process that died by itself, never for one the harness ended; ``not_ready`` for one that never
came back to consume; and stalls counted from the ready signal."""

from __future__ import annotations

import dataclasses

from jobchaos_histories import Builder
from test_checkers_workers import POLICY, T0, at, attempt, fault

from harness.checkers import Policy, Validity, check_workers
from harness.history import HEAL, INJECT, History, worker_life


def life(b: Builder, worker: str, start: float, end: float | None, *, code: int | None = 0,
         ready: float | None = None, signalled: float | None = None) -> int:
    return b.observe(worker_life(
        worker, pid=100 + int(start), at=T0 + start, ended=None if end is None else T0 + end,
        code=None if end is None else code, ready=None if ready is None else T0 + ready,
        signalled=None if signalled is None else T0 + signalled))


def exit_mid_run(*, signalled: float | None = None, code: int = 1,
                 steps: tuple[str, ...] = ("db_write",)) -> tuple[History, list[int]]:
    """worker-1 exits at +5 s while a Redis link fault is in force, and is restarted."""
    b = Builder()
    b.dispatch("a", steps)
    attempt(b, "a", "worker-1", 4.0, None, status=None)
    attempt(b, "a", "worker-2", 8.0, 8.5, n=2)
    at(b, 4.5)
    link = fault(b, INJECT, "down-1", "down", "redis", {"links": ["redis-w1"]})
    at(b, 6.0)
    fault(b, HEAL, "down-1", "down", "redis")
    at(b, 40.0)
    b.drain()
    ops = [life(b, "worker-1", 0.0, 5.0, code=code, ready=0.3, signalled=signalled),
           life(b, "worker-1", 5.1, 41.0, ready=5.4, signalled=40.5),
           life(b, "worker-2", 0.0, 41.0, ready=0.3, signalled=40.5), link]
    return b.build(), ops


def test_a_process_that_exits_by_itself_mid_run_is_exited() -> None:
    h, (died, again, _, link) = exit_mid_run()
    result = check_workers(h, POLICY)
    assert result.validity is Validity.INVALID
    [a] = result.anomalies
    assert a.kind == "exited"
    assert a.detail.startswith("worker-1's process exited on its own with code 1 at +")
    assert "ready since +" in a.detail and "it was running a" in a.detail
    assert "faults active then: down on redis [down-1]" in a.detail
    assert "restarted at +" in a.detail
    assert {died, again, link} <= set(a.ops)


def test_a_kill_by_the_kernel_says_which_signal() -> None:
    h, _ = exit_mid_run(code=-9)
    [a] = check_workers(h, POLICY).anomalies
    assert "exited on its own killed by SIGKILL, not sent by the harness" in a.detail


def test_a_process_the_harness_signalled_did_not_exit_by_itself() -> None:
    h, _ = exit_mid_run(signalled=4.9)
    result = check_workers(h, POLICY)
    assert result.counts["exited"] == 0, result.anomalies


def test_an_exit_during_a_strike_on_that_worker_is_the_nemesis_doing() -> None:
    for kind, params in [("kill", {"signal": "SIGKILL"}), ("kill_host", {"signal": "SIGKILL"}),
                         ("signal", {"signal": "SIGTERM", "count": 1}),
                         ("restart", {"signal": "SIGTERM"}), ("pause", {})]:
        b = Builder()
        b.dispatch("a")
        attempt(b, "a", "worker-2", 1.0, 1.5)
        at(b, 4.9)
        fault(b, INJECT, f"{kind}-1", kind, "worker-1", params)
        at(b, 5.2)
        fault(b, HEAL, f"{kind}-1", kind, "worker-1", {"restarted": True})
        at(b, 40.0)
        b.drain()
        life(b, "worker-1", 0.0, 5.0, code=-9)  # no ``signalled``: as histories before it
        life(b, "worker-1", 5.2, 41.0)
        life(b, "worker-2", 0.0, 41.0)
        result = check_workers(b.build(), POLICY)
        assert result.counts["exited"] == 0, (kind, result.anomalies)


def test_a_strike_on_another_worker_excuses_nothing() -> None:
    b = Builder()
    b.dispatch("a")
    attempt(b, "a", "worker-2", 1.0, 1.5)
    at(b, 4.9)
    fault(b, INJECT, "kill-1", "kill", "worker-2", {"signal": "SIGKILL"})
    at(b, 5.2)
    fault(b, HEAL, "kill-1", "kill", "worker-2", {"restarted": True})
    at(b, 40.0)
    b.drain()
    life(b, "worker-1", 0.0, 5.0, code=1)
    life(b, "worker-2", 0.0, 5.0, code=-9, signalled=4.9)
    result = check_workers(b.build(), POLICY)
    assert [a.kind for a in result.anomalies] == ["exited"]
    assert "kill on worker-2 [kill-1]" in result.anomalies[0].detail


def test_exits_after_the_drain_are_the_final_stop() -> None:
    b = Builder()
    b.dispatch("a")
    attempt(b, "a", "worker-1", 1.0, 1.5)
    at(b, 40.0)
    b.drain()
    life(b, "worker-1", 0.0, 40.2, code=0)  # no ``signalled``: as histories before it
    assert check_workers(b.build(), POLICY).validity is Validity.VALID


def test_a_job_built_to_take_its_process_down_is_not_the_worker_exiting() -> None:
    for step in ("crash", "alloc"):
        h, _ = exit_mid_run(steps=("db_write", step))
        result = check_workers(h, POLICY)
        assert result.counts["exited"] == 0, result.anomalies
        assert result.counts["exits_by_job"] == 1


def test_a_slow_start_is_not_a_stall() -> None:
    b = Builder()
    b.dispatch("a")
    attempt(b, "a", "worker-1", 5.0, 5.5)
    at(b, 40.0)
    b.drain()
    life(b, "worker-1", 0.0, 41.0, ready=4.9, signalled=40.5)
    h = b.build()
    assert check_workers(h, POLICY).validity is Validity.VALID
    # The same history without the ready signal: idle for 5 s while "a" waited.
    b2 = Builder()
    b2.dispatch("a")
    attempt(b2, "a", "worker-1", 5.0, 5.5)
    at(b2, 40.0)
    b2.drain()
    life(b2, "worker-1", 0.0, 41.0, signalled=40.5)
    assert [a.kind for a in check_workers(b2.build(), POLICY).anomalies] == ["stalled"]


def never_ready_after_a_restart(fault_from: float | None = None) -> History:
    """worker-1 is killed at +2 s and its next process never signals readiness; worker-2
    does all the work, one job after another."""
    b = Builder()
    for k in range(10):
        b.dispatch(f"j{k}")
    for k in range(10):
        attempt(b, f"j{k}", "worker-2", 1.0 + 3 * k, 3.9 + 3 * k)
    at(b, 2.0)
    fault(b, INJECT, "kill-1", "kill", "worker-1", {"signal": "SIGKILL"})
    at(b, 2.1)
    fault(b, HEAL, "kill-1", "kill", "worker-1", {"restarted": True})
    if fault_from is not None:
        at(b, fault_from)
        fault(b, INJECT, "down-2", "down", "redis")
        at(b, 39.0)
        fault(b, HEAL, "down-2", "down", "redis")
    at(b, 40.0)
    b.drain()
    life(b, "worker-1", 0.0, 2.0, code=-9, ready=0.2, signalled=2.0)
    life(b, "worker-1", 2.1, 41.0, signalled=40.5)
    life(b, "worker-2", 0.0, 41.0, ready=0.2, signalled=40.5)
    return b.build()


def test_a_process_that_never_becomes_ready_again_is_not_ready_not_stalled() -> None:
    h = never_ready_after_a_restart()
    judged = dataclasses.replace(POLICY, ready_timeout=30.0)
    result = check_workers(h, judged)
    assert [a.kind for a in result.anomalies] == ["not_ready"]
    [a] = result.anomalies
    assert a.detail.startswith("worker-1's process started at +")
    assert "(a restart) and was not ready for 37.9 s" in a.detail
    assert "within the ready timeout, 30 s" in a.detail
    # Without a ready timeout (the worker does not signal readiness) it is not judged.
    assert check_workers(h, POLICY).validity is Validity.VALID
    # Nor when a fault held it back long enough.
    faulted = never_ready_after_a_restart(fault_from=10.0)
    assert check_workers(faulted, judged).counts["not_ready"] == 0


def test_the_policy_knows_the_ready_timeout() -> None:
    assert Policy().ready_timeout is None
    assert Policy(ready_timeout=5.0).to_dict()["ready_timeout"] == 5.0
