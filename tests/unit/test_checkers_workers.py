"""The workers checker: stalled consumers, jobs dropped on shutdown, slow shutdowns."""

from __future__ import annotations

from typing import Any

from jobchaos_histories import Builder

from harness.checkers import Backoff, Policy, Validity, check_workers
from harness.history import HEAL, INJECT, NEMESIS, History, attempt_record, worker_life

POLICY = Policy(max_tries=3, backoff=Backoff(base=0.1, cap=0.4), job_timeout=1.0, lease=2.0,
                shutdown_grace=1.5)
T0 = 1000.0


def at(b: Builder, seconds: float) -> None:
    """Move the builder's clock to ``T0 + seconds`` (op walls follow it)."""
    assert T0 + seconds >= b.now
    b.t = seconds


def attempt(b: Builder, job: str, worker: str, start: float, end: float | None,
            status: str | None = "completed", reason: str | None = None, n: int = 1) -> int:
    return b.observe(attempt_record(job, at=T0 + start, ended=None if end is None else T0 + end,
                                    status=status, reason=reason, attempt=n,  # type: ignore[arg-type]
                                    worker=worker))


def life(b: Builder, worker: str, start: float, end: float | None) -> int:
    return b.observe(worker_life(worker, pid=1, at=T0 + start,
                                 ended=None if end is None else T0 + end,
                                 code=None if end is None else 0))


def fault(b: Builder, phase: str, fault_id: str, kind: str, target: str,
          params: dict[str, Any] | None = None) -> int:
    return b.op("info", NEMESIS, phase, {"fault": fault_id, "target": target, "kind": kind,
                                         "params": params or {}})


def ten_jobs(b: Builder) -> list[str]:
    jobs = [f"j{k}" for k in range(10)]
    for j in jobs:
        b.dispatch(j)
    return jobs


def finish(b: Builder, lives: dict[str, tuple[float, float | None]]) -> History:
    at(b, 40.0)
    b.drain()
    for w, (start, end) in lives.items():
        life(b, w, start, end)
    return b.build()


def test_an_idle_worker_while_work_waits_is_stalled() -> None:
    b = Builder()
    for k, j in enumerate(ten_jobs(b)):  # all on worker-1, one after the other
        attempt(b, j, "worker-1", 1.0 + k, 1.9 + k)
    h = finish(b, {"worker-1": (0.0, 41.0), "worker-2": (0.0, 41.0)})
    result = check_workers(h, POLICY)
    assert result.validity is Validity.INVALID
    [a] = result.of_kind("stalled")
    assert a.detail.startswith("worker-2 was alive and idle for ")
    assert "while 10 job(s) waited" in a.detail
    assert {h.fs[i] for i in a.ops} == {"dispatch"}  # the waits, not the life: its faults


def test_workers_sharing_the_work_are_not_stalled() -> None:
    b = Builder()
    for k, j in enumerate(ten_jobs(b)):
        attempt(b, j, f"worker-{k % 2 + 1}", 1.0 + k // 2, 1.9 + k // 2)
    result = check_workers(finish(b, {"worker-1": (0.0, 41.0), "worker-2": (0.0, 41.0)}),
                           POLICY)
    assert result.validity is Validity.VALID, result.anomalies
    assert result.counts["workers"] == 2


def test_the_bound_starts_again_when_a_fault_heals() -> None:
    b = Builder()
    jobs = ten_jobs(b)
    fault(b, INJECT, "down-1", "down", "redis")
    at(b, 7.0)
    fault(b, HEAL, "down-1", "down", "redis")
    for k, j in enumerate(jobs):  # worker-2 idles 7 s, but only 3 s of it after the heal
        attempt(b, j, "worker-1", 1.0 + k, 1.9 + k)
    result = check_workers(finish(b, {"worker-1": (0.0, 41.0), "worker-2": (0.0, 41.0)}),
                           POLICY)
    assert result.validity is Validity.VALID, result.anomalies


def test_a_retry_waits_only_after_its_backoff() -> None:
    b = Builder()
    b.dispatch("a")
    attempt(b, "a", "worker-1", 1.0, 1.5, "retrying", "exception", n=1)
    attempt(b, "a", "worker-1", 5.0, 5.5, "retrying", "exception", n=2)  # 3.4 s late: fine
    attempt(b, "a", "worker-2", 11.0, 11.5, "completed", n=3)  # 5.1 s late: stalled
    result = check_workers(finish(b, {"worker-1": (0.0, 41.0), "worker-2": (0.0, 41.0)}),
                           POLICY)
    kinds = [(a.kind, a.detail.split(" was")[0]) for a in result.anomalies]
    assert kinds == [("stalled", "worker-1"), ("stalled", "worker-2")]


def test_a_job_a_stopped_worker_drops_is_dropped_on_shutdown() -> None:
    b = Builder()
    b.dispatch("a")
    attempt(b, "a", "worker-1", 0.5, 4.0, "retrying", "lease_lost")
    attempt(b, "a", "worker-2", 4.5, 5.0, "completed", n=2)
    at(b, 1.0)
    stop = fault(b, INJECT, "signal-1", "signal", "worker-1", {"signal": "SIGTERM", "count": 1})
    at(b, 1.2)
    fault(b, HEAL, "signal-1", "signal", "worker-1", {"restarted": True})
    h = finish(b, {"worker-1": (0.0, 1.1), "worker-2": (0.0, 41.0)})
    result = check_workers(h, POLICY)
    [a] = result.anomalies
    assert a.kind == "dropped_on_shutdown" and a.job == "a"
    assert "worker-1 was sent SIGTERM" in a.detail and "lease expired" in a.detail
    assert stop in a.ops


def test_a_job_given_back_within_the_grace_is_fine() -> None:
    b = Builder()
    b.dispatch("a")
    attempt(b, "a", "worker-1", 0.5, 2.6, "retrying", "killed")
    attempt(b, "a", "worker-2", 2.8, 3.0, "completed", n=2)
    at(b, 1.0)
    fault(b, INJECT, "signal-1", "signal", "worker-1", {"signal": "SIGTERM", "count": 1})
    at(b, 2.8)
    fault(b, HEAL, "signal-1", "signal", "worker-1", {"restarted": True})
    result = check_workers(finish(b, {"worker-1": (0.0, 2.7), "worker-2": (0.0, 41.0)}), POLICY)
    assert result.validity is Validity.VALID, result.anomalies
    assert result.counts["shutdowns_judged"] == 1


def test_an_exit_long_after_the_grace_is_slow() -> None:
    b = Builder()
    b.dispatch("a")
    attempt(b, "a", "worker-1", 0.5, 4.0, "completed")
    at(b, 1.0)
    fault(b, INJECT, "signal-1", "signal", "worker-1", {"signal": "SIGTERM", "count": 1})
    at(b, 4.2)
    fault(b, HEAL, "signal-1", "signal", "worker-1", {"restarted": True})
    h = finish(b, {"worker-1": (0.0, 4.1), "worker-2": (0.0, 41.0)})
    [a] = check_workers(h, POLICY).anomalies
    assert a.kind == "slow_shutdown" and a.job is None
    assert a.detail.startswith("worker-1 exited 3.10 s after its SIGTERM; its shutdown grace "
                               "is 1.5 s")
    unjudged = Policy(max_tries=3, lease=2.0)  # no shutdown grace declared
    assert check_workers(h, unjudged).validity is Validity.VALID


def test_without_worker_lives_nothing_is_judged() -> None:
    b = Builder()
    b.dispatch("a")
    attempt(b, "a", "worker-1", 30.0, 31.0)
    result = check_workers(b.build(), POLICY)
    assert result.validity is Validity.VALID
    assert result.counts["workers"] == 0


def test_an_attempt_of_a_killed_earlier_process_is_not_the_stopped_ones() -> None:
    b = Builder()
    b.dispatch("a")
    attempt(b, "a", "worker-1", 0.5, 4.0, "retrying", "lease_lost")  # its process was killed
    attempt(b, "a", "worker-2", 4.5, 5.0, "completed", n=2)
    at(b, 1.0)
    fault(b, INJECT, "kill-1", "kill", "worker-1", {"signal": "SIGKILL"})
    fault(b, HEAL, "kill-1", "kill", "worker-1", {"restarted": True})
    at(b, 2.0)
    fault(b, INJECT, "signal-2", "signal", "worker-1", {"signal": "SIGTERM", "count": 1})
    at(b, 2.3)
    fault(b, HEAL, "signal-2", "signal", "worker-1", {"restarted": True})
    at(b, 40.0)
    b.drain()
    life(b, "worker-1", 0.0, 1.0)
    life(b, "worker-1", 1.1, 2.2)
    life(b, "worker-1", 2.3, 41.0)
    life(b, "worker-2", 0.0, 41.0)
    result = check_workers(b.build(), POLICY)
    assert result.validity is Validity.VALID, result.anomalies
