"""Live readings of a run, taken by the harness over direct (unfaulted) connections: how many
attempts and effects so far, which jobs are terminal, what is still on the queue, which
attempts are in flight. One PostgreSQL and one Redis connection serve the whole run and are
re-opened after an error (a server restart, say)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from harness.contract import Connections

INFLIGHT_SQL = """
SELECT a.job_id, a.attempt, a.worker, extract(epoch FROM a.started_at)::float8
FROM chaos_attempts a
WHERE NOT EXISTS (SELECT 1 FROM chaos_outcomes o
                  WHERE o.job_id = a.job_id AND o.attempt = a.attempt AND o.worker = a.worker)
ORDER BY a.id
"""
INF = float("inf")


class Gauges:
    """Reads of the contract tables and the queue list; each raises on a connection error
    (callers that poll through faults suppress it and try again)."""

    def __init__(self, direct: Connections) -> None:
        self.direct = direct
        self._pg: Any = None
        self._redis: Any = None

    def _sql(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        if self._pg is None or self._pg.closed:
            self._pg = psycopg.connect(self.direct.database_url, connect_timeout=5,
                                       autocommit=True)
        try:
            return list(self._pg.execute(sql, args).fetchall())
        except psycopg.Error:
            self._drop_pg()
            raise

    def _drop_pg(self) -> None:
        with contextlib.suppress(Exception):
            self._pg.close()
        self._pg = None

    def count(self, table: str) -> int:
        """Rows in ``chaos_attempts`` or ``chaos_effects``."""
        assert table in ("chaos_attempts", "chaos_effects")
        return int(self._sql(f"SELECT count(*) FROM {table}")[0][0])

    def attempts(self) -> int:
        return self.count("chaos_attempts")

    def effects(self) -> int:
        return self.count("chaos_effects")

    def activity(self) -> int:
        """Rows any worker wrote so far (attempts, effects, outcomes): 0 means none consumed."""
        return int(self._sql("SELECT (SELECT count(*) FROM chaos_attempts) + "
                             "(SELECT count(*) FROM chaos_effects) + "
                             "(SELECT count(*) FROM chaos_outcomes)")[0][0])

    def terminal_jobs(self) -> set[str]:
        rows = self._sql("SELECT DISTINCT job_id FROM chaos_outcomes "
                         "WHERE status IN ('completed', 'dead')")
        return {r[0] for r in rows}

    def newest_worker(self, table: str) -> str | None:
        """The worker that wrote the newest row of ``table`` (it is mid-job now)."""
        assert table in ("chaos_attempts", "chaos_effects")
        rows = self._sql(f"SELECT worker FROM {table} ORDER BY id DESC LIMIT 1")
        return str(rows[0][0]) if rows else None

    def inflight(self, worker: str | None = None,
                 live: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
        """Attempts started and not ended (no outcome row), of ``worker`` or of all; with
        ``live`` (worker id -> the Unix start time of its running process), only those running
        on a live process (an attempt of a process killed before is not in flight)."""
        return [{"job": j, "attempt": a, "worker": w} for j, a, w, at in self._sql(INFLIGHT_SQL)
                if (worker is None or w == worker) and (live is None or at >= live.get(w, INF))]

    def busy_workers(self, live: Mapping[str, float]) -> list[str]:
        """The workers running an attempt now (``live``: worker id -> the Unix start time of
        its running process): the one that wrote the newest effect row first (it is mid-job
        for sure), then by their newest attempt."""
        newest: dict[str, float] = {}
        for _, _, w, at in self._sql(INFLIGHT_SQL):
            if at >= live.get(w, INF):
                newest[w] = max(at, newest.get(w, at))
        if not newest:
            return []
        effects = {str(w): int(n) for w, n in
                   self._sql("SELECT worker, max(id) FROM chaos_effects GROUP BY worker")}
        return sorted(newest, key=lambda w: (effects.get(w, 0), newest[w]), reverse=True)

    def attempts_of(self, job_id: str) -> list[tuple[int, str, float, bool]]:
        """Each attempt of ``job_id`` in order: (attempt, worker, Unix start time, ended: it
        has an outcome row)."""
        rows = self._sql(
            "SELECT a.attempt, a.worker, extract(epoch FROM a.started_at)::float8, "
            "EXISTS (SELECT 1 FROM chaos_outcomes o WHERE o.job_id = a.job_id "
            "AND o.attempt = a.attempt AND o.worker = a.worker) "
            "FROM chaos_attempts a WHERE a.job_id = %s ORDER BY a.id", (job_id,))
        return [(int(n), str(w), float(at), bool(ended)) for n, w, at, ended in rows]

    def running_on_live_workers(self, started: Mapping[str, float]) -> int:
        """Attempts without an outcome that began after their worker's current process
        started (``started``: worker id -> its Unix start time): work really in progress, as
        opposed to attempts of a process that was killed."""
        return sum(1 for _, _, w, at in self._sql(INFLIGHT_SQL) if at >= started.get(w, 1e18))

    def queued(self) -> int:
        """Dispatched copies still on the queue list (not yet taken by a worker)."""
        import redis

        if self._redis is None:
            self._redis = redis.Redis.from_url(self.direct.redis_url, socket_timeout=5,
                                               socket_connect_timeout=5)
        try:
            return int(self._redis.llen(self.direct.queue))
        except redis.RedisError:
            self._redis.close()
            self._redis = None
            raise

    def close(self) -> None:
        self._drop_pg()
        if self._redis is not None:
            with contextlib.suppress(Exception):
                self._redis.close()
            self._redis = None
