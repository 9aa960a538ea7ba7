"""Helpers for tests that drive the reference worker on a real stack.

Every wait is on a condition with a deadline (polling the database or the probe), never a
fixed sleep. Knobs are scaled down so one scenario costs seconds.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import psycopg
import redis

from harness.contract import Connections, Job, Policy, ProbeState, dispatch, worker_env

T = TypeVar("T")

FAST = Policy(job_timeout=1.0, max_tries=3, backoff_base=0.1, backoff_cap=0.4, lease=2.0,
              lock_ttl=2.0, memory_limit_mb=64, shutdown_grace=1.5)


def bugs_env(*names: str) -> dict[str, str]:
    """The env that turns on the named bug switches."""
    return {"REFERENCE_WORKER_BUGS": ",".join(names)}


def policy(**overrides: Any) -> Policy:
    """The fast test policy with some knobs changed."""
    return dataclasses.replace(FAST, **overrides)


def wait_until(check: Callable[[], T | None], *, timeout: float, what: str,
               interval: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; "
                                 f"last value: {value!r}")
        time.sleep(interval)


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    job_id: str
    attempt: int
    worker: str
    status: str
    reason: str | None
    detail: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class AttemptRow:
    job_id: str
    attempt: int
    worker: str
    started_at: datetime
    stopped_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class EffectRow:
    job_id: str
    step: int
    attempt: int
    worker: str


class Tables:
    """Reads the contract tables of one test database."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self.conn = psycopg.connect(database_url, autocommit=True)

    def close(self) -> None:
        self.conn.close()

    def outcomes(self, job_id: str | None = None) -> list[OutcomeRow]:
        rows = self._rows("SELECT job_id, attempt, worker, status, reason, detail, at "
                          "FROM chaos_outcomes", job_id, "id")
        return [OutcomeRow(*r) for r in rows]

    def attempts(self, job_id: str | None = None) -> list[AttemptRow]:
        rows = self._rows("SELECT job_id, attempt, worker, started_at, stopped_at "
                          "FROM chaos_attempts", job_id, "id")
        return [AttemptRow(*r) for r in rows]

    def effects(self, job_id: str | None = None) -> list[EffectRow]:
        rows = self._rows("SELECT job_id, step, attempt, worker FROM chaos_effects", job_id, "id")
        return [EffectRow(*r) for r in rows]

    def terminal(self, job_id: str) -> OutcomeRow | None:
        """The job's completed or dead outcome, if it has one."""
        return next((o for o in self.outcomes(job_id) if o.status in ("completed", "dead")), None)

    def wait_terminal(self, job_ids: Iterable[str], timeout: float) -> dict[str, OutcomeRow]:
        ids = list(job_ids)

        def done() -> dict[str, OutcomeRow] | None:
            found = {j: t for j in ids if (t := self.terminal(j)) is not None}
            return found if len(found) == len(ids) else None

        return wait_until(done, timeout=timeout, what=f"terminal outcomes of {ids}")

    def _rows(self, sql: str, job_id: str | None, order: str) -> list[tuple[Any, ...]]:
        params: tuple[str, ...] = ()
        if job_id is None:
            query = f"{sql} ORDER BY {order}"
        else:
            query, params = f"{sql} WHERE job_id = %s ORDER BY {order}", (job_id,)
        try:
            return self.conn.execute(query, params).fetchall()
        except psycopg.OperationalError:  # the server was restarted under us: once more
            self.conn.close()
            self.conn = psycopg.connect(self.url, autocommit=True)
            return self.conn.execute(query, params).fetchall()


def run_probe(conn: Connections, *, timeout: float = 20.0) -> ProbeState:
    """Run ``python -m reference_worker.probe`` as the harness would, and parse its answer."""
    env = {**os.environ, **worker_env(conn, FAST, "probe")}
    out = subprocess.run([sys.executable, "-m", "reference_worker.probe"], env=env,
                         capture_output=True, timeout=timeout, check=True)
    return ProbeState.from_json(out.stdout)


def where(state: ProbeState, job_id: str) -> list[str]:
    """The places the probe found ``job_id`` (queued, scheduled, leased, dead, lock holder)."""
    places = [name for name, ids in (("queued", state.queued), ("scheduled", state.scheduled))
              if job_id in ids]
    places += ["leased" for x in state.leased if x.job_id == job_id]
    places += ["dead" for x in state.dead if x.job_id == job_id]
    places += ["locked" for x in state.locks if x.holder == job_id]
    return places


def send(conn: Connections, *jobs: Job) -> list[str]:
    """Dispatch ``jobs`` with the contract's default dispatcher."""
    client = redis.Redis.from_url(conn.redis_url)
    try:
        return dispatch(client, conn.queue, jobs)
    finally:
        client.close()


def seconds(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds()
