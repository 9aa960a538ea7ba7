"""The ready signal: one ``chaos_ready`` row per worker process once it consumes.

A worker inserts ``(worker, pid, at)`` (``worker`` exactly its ``CHAOS_WORKER_ID``) when it is
about to take its first job; the harness waits for a row from every worker's current process
before the nemesis starts, and records when each process became ready in its ``life`` op. A
row belongs to the process whose pid it names; without a known pid (a shim that reports from
another process), to the process of that worker that was running when it was written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:  # workers.py imports this module
    from harness.services.workers import Life

# Seconds a row may seem to precede its process's start, or follow its exit (the database's
# clock against the harness's, and the harness stamping an exit only when it polls).
CLOCK_SLACK = 0.25

READY_SQL = "SELECT worker, pid, extract(epoch FROM at)::float8 FROM chaos_ready ORDER BY id"


@dataclass(frozen=True, slots=True)
class ReadyRow:
    """One ``chaos_ready`` row: ``worker`` said its process ``pid`` consumes, at ``at``."""

    worker: str
    pid: int | None
    at: float


def owner(row: ReadyRow, lives: Sequence[Life]) -> Life | None:
    """The life (of ``row.worker``) that ``row`` signals the readiness of, if any."""
    if row.pid is not None:
        for life in lives:
            if life.pid == row.pid:
                return life
    inside = [life for life in lives
              if life.started <= row.at and (life.ended is None or row.at <= life.ended)]
    if inside:
        return inside[0]
    near = [life for life in lives if life.started - CLOCK_SLACK <= row.at
            and (life.ended is None or row.at <= life.ended + CLOCK_SLACK)]
    return near[0] if near else None


def assign(worker_id: str, lives: Sequence[Life], rows: Iterable[ReadyRow]) -> None:
    """Set each life's ``ready`` to the earliest row of ``worker_id`` that it owns."""
    for row in rows:
        if row.worker != worker_id:
            continue
        life = owner(row, lives)
        if life is not None and (life.ready is None or row.at < life.ready):
            life.ready = row.at


class ReadyRows:
    """Reads ``chaos_ready`` over one direct connection (re-opened after an error)."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._conn: Any = None

    def __call__(self) -> list[ReadyRow]:
        import psycopg

        if self._conn is None:
            self._conn = psycopg.connect(self.database_url, connect_timeout=5, autocommit=True)
        try:
            rows = self._conn.execute(READY_SQL).fetchall()
        except psycopg.Error:
            self.close()
            raise
        return [ReadyRow(str(w), None if pid is None else int(pid), float(at))
                for w, pid, at in rows]

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
