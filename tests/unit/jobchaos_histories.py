"""Building histories by hand for the history and checker tests (not a test module)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.history import (
    DISPATCH,
    DISPATCHER,
    DRAIN,
    HEAL,
    INJECT,
    NEMESIS,
    OBSERVER,
    History,
    Observation,
    attempt_record,
    dispatch_value,
    effect,
    job_state,
    lock_held,
    probe_status,
    reported_outcome,
)

EFFECTFUL = ("db_write", "email")


def steps_of(*kinds: str | dict[str, Any]) -> list[dict[str, Any]]:
    return [{"op": k} if isinstance(k, str) else k for k in kinds]


class Builder:
    """Appends ops with a clock that advances 1 ms per op (wall = 1000.0 + time)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, Any, int, float]] = []
        self.t = 0.0

    def op(self, type_: str, process: str, f: str, value: Any) -> int:
        self.t += 0.001
        self.rows.append((type_, process, f, value, int(self.t * 1e9), 1000.0 + self.t))
        return len(self.rows) - 1

    def observe(self, obs: Observation) -> int:
        return self.op("ok", OBSERVER, obs.f, obs.value)

    @property
    def now(self) -> float:
        return 1000.0 + self.t

    # dispatcher ------------------------------------------------------------------------
    def dispatch(self, job: str, steps: Sequence[str | dict[str, Any]] = ("db_write",),
                 result: str | None = "ok") -> list[int]:
        ops = [self.op("invoke", DISPATCHER, DISPATCH, dispatch_value(job, steps_of(*steps)))]
        if result is not None:
            ops.append(self.op(result, DISPATCHER, DISPATCH, {"job": job}))
        return ops

    # nemesis ---------------------------------------------------------------------------
    def fault(self, phase: str, fault: str, target: str = "redis", kind: str = "latency",
              params: dict[str, Any] | None = None) -> int:
        assert phase in (INJECT, HEAL)
        return self.op("info", NEMESIS, phase,
                       {"fault": fault, "target": target, "kind": kind, "params": params or {}})

    def drain(self, pending: int = 0) -> list[int]:
        return [self.op("invoke", OBSERVER, DRAIN, {"deadline": 30.0}),
                self.op("ok" if pending == 0 else "info", OBSERVER, DRAIN, {"pending": pending})]

    # observer --------------------------------------------------------------------------
    def attempt(self, job: str, at: float, ended: float | None = None,
                status: str | None = "completed", n: int | None = None,
                reason: str | None = None, *, stopped: float | None = None,
                worker: str = "worker-1") -> int:
        """An attempt; one that failed (status ``retrying`` or ``dead``) has reason
        ``exception`` unless another is given; ``stopped``: when its process ended."""
        if status in ("retrying", "dead") and reason is None:
            reason = "exception"
        return self.observe(attempt_record(job, at=at, ended=ended, status=status,  # type: ignore[arg-type]
                                           reason=reason, attempt=n, worker=worker,  # type: ignore[arg-type]
                                           stopped=stopped))

    def strike(self, phase: str, fault: str, kind: str, target: str = "worker-1",
               inflight: Sequence[tuple[str, int, str]] = ()) -> int:
        """A nemesis worker fault (``kill``, ``pause``) with the attempts it found in flight,
        ``(job, attempt, worker)`` each."""
        assert phase in (INJECT, HEAL)
        params = {"inflight": [{"job": j, "attempt": n, "worker": w} for j, n, w in inflight]}
        return self.op("info", NEMESIS, phase,
                       {"fault": fault, "target": target, "kind": kind, "params": params})

    def effect(self, job: str, step: int, kind: str = "db_write", at: float | None = None,
               attempt: int | None = None) -> int:
        return self.observe(effect(job, step, kind, at=at, attempt=attempt))  # type: ignore[arg-type]

    def outcome(self, job: str, status: str = "completed", reason: str | None = None,
                at: float | None = None) -> int:
        return self.observe(reported_outcome(job, status, reason=reason, at=at))  # type: ignore[arg-type]

    def probe(self, available: bool = True, reason: str | None = None) -> int:
        return self.observe(probe_status(available, reason))

    def state(self, job: str, state: str, reason: str | None = None) -> int:
        return self.observe(job_state(job, state, reason=reason))  # type: ignore[arg-type]

    def lock(self, key: str, ttl: float | None, job: str | None = None,
             age: float | None = None) -> int:
        return self.observe(lock_held(key, ttl=ttl, job=job, age=age))

    def build(self) -> History:
        return History.from_ops(self.rows)


def run(b: Builder, job: str, steps: Sequence[str | dict[str, Any]], *, start: float,
        failures: int = 0, gap: float = 1.0, status: str = "completed") -> None:
    """Observations of one job that ran correctly: ``failures`` failed attempts spaced
    ``gap`` s apart, then (if ``status`` is completed) a successful one with its effects;
    if ``status`` is dead, the last failure is the job's end."""
    at = start
    tries = failures + (1 if status == "completed" else 0)
    for n in range(1, tries + 1):
        end = "retrying" if n < tries else status
        b.attempt(job, at, at + 0.01, end, n, stopped=at + 0.01)
        at += 0.01 + gap
    if status == "completed":
        for n, kind in enumerate(steps_of(*steps)):
            if kind["op"] in EFFECTFUL:
                b.effect(job, n, kind["op"], at=start)
    b.outcome(job, status, reason=None if status == "completed" else "exception", at=at)
    if status == "dead":
        b.state(job, "dead", reason="exception")
