"""Live readings of a run, taken by the harness over direct (unfaulted) connections: how many
attempts and effects so far, which jobs are terminal, what is still waiting in the worker's
system, which attempts are in flight. One PostgreSQL and one Redis connection serve the whole
run and are re-opened after an error (a server restart, say)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Mapping
from typing import Any

from harness.contract import Connections, ProbeState

# The attempts no outcome row ended (as ``harness.collectors.match_outcomes`` matches them),
# of the job ``%(job)s`` (NULL: of every job). An outcome row with an ``attempt_id`` ended that
# attempt. The others, per (job, attempt number, worker), each end the latest attempt that
# started at or before them and was not ended yet: a stack, attempts pushed at their start and
# popped by outcome rows in time order. Attempt ``a`` was popped when, after it, outcome rows
# outnumber attempts somewhere: the running sum (attempt -1, outcome +1) rises above its value
# at ``a``.
OPEN_SQL = """
WITH claimed AS (
    SELECT attempt_id AS id FROM chaos_outcomes WHERE attempt_id IS NOT NULL
), events AS (
    SELECT a.id, a.job_id, a.attempt, a.worker, a.started_at AS t, -1 AS step
    FROM chaos_attempts a
    WHERE (%(job)s::text IS NULL OR a.job_id = %(job)s)
      AND NOT EXISTS (SELECT 1 FROM claimed c WHERE c.id = a.id)
    UNION ALL
    SELECT o.id, o.job_id, o.attempt, o.worker, o.at, 1
    FROM chaos_outcomes o
    WHERE (%(job)s::text IS NULL OR o.job_id = %(job)s) AND o.attempt_id IS NULL
), running AS (
    SELECT id, job_id, attempt, worker, t, step,
           sum(step) OVER (PARTITION BY job_id, attempt, worker ORDER BY t, step, id
                           ROWS UNBOUNDED PRECEDING) AS depth
    FROM events
), ahead AS (
    SELECT id, step, depth,
           max(depth) OVER (PARTITION BY job_id, attempt, worker ORDER BY t, step, id
                            ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) AS peak
    FROM running
)
SELECT id FROM ahead WHERE step = -1 AND (peak IS NULL OR peak <= depth)
"""

INFLIGHT_SQL = f"""
WITH open AS ({OPEN_SQL})
SELECT a.id, a.job_id, a.attempt, a.worker, extract(epoch FROM a.started_at)::float8
FROM chaos_attempts a JOIN open USING (id)
ORDER BY a.id
"""

ATTEMPTS_OF_SQL = f"""
WITH open AS ({OPEN_SQL})
SELECT a.id, a.attempt, a.worker, extract(epoch FROM a.started_at)::float8,
       NOT EXISTS (SELECT 1 FROM open WHERE open.id = a.id)
FROM chaos_attempts a WHERE a.job_id = %(job)s
ORDER BY a.id
"""
INF = float("inf")


class Gauges:
    """Reads of the contract tables and of what the worker's system holds (its probe, else
    the queue list); each raises on a connection error (callers that poll through faults
    suppress it and try again)."""

    def __init__(self, direct: Connections,
                 probe: Callable[[], ProbeState] | None = None) -> None:
        self.direct = direct
        self.probe = probe  # the worker's probe (RuntimeError when it fails), if it has one
        self._pg: Any = None
        self._redis: Any = None

    def _sql(self, sql: str, args: tuple[Any, ...] | Mapping[str, Any] = ()
             ) -> list[tuple[Any, ...]]:
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
        """Attempts started and not ended (no outcome row ended them), of ``worker`` or of
        all: ``{job, attempt, attempt_id, worker}`` each; with ``live`` (worker id -> the Unix
        start time of its running process), only those running on a live process (an attempt
        of a process killed before is not in flight)."""
        rows = self._sql(INFLIGHT_SQL, {"job": None})
        return [{"job": j, "attempt": n, "attempt_id": i, "worker": w}
                for i, j, n, w, at in rows
                if (worker is None or w == worker) and (live is None or at >= live.get(w, INF))]

    def busy_workers(self, live: Mapping[str, float]) -> list[str]:
        """The workers running an attempt now (``live``: worker id -> the Unix start time of
        its running process): the one that wrote the newest effect row first (it is mid-job
        for sure), then by their newest attempt."""
        newest: dict[str, float] = {}
        for _, _, _, w, at in self._sql(INFLIGHT_SQL, {"job": None}):
            if at >= live.get(w, INF):
                newest[w] = max(at, newest.get(w, at))
        if not newest:
            return []
        effects = {str(w): int(n) for w, n in
                   self._sql("SELECT worker, max(id) FROM chaos_effects GROUP BY worker")}
        return sorted(newest, key=lambda w: (effects.get(w, 0), newest[w]), reverse=True)

    def attempts_of(self, job_id: str) -> list[tuple[int, int, str, float, bool]]:
        """Each attempt of ``job_id`` in order: (attempt id, attempt number, worker, Unix
        start time, ended: an outcome row ended it)."""
        rows = self._sql(ATTEMPTS_OF_SQL, {"job": job_id})
        return [(int(i), int(n), str(w), float(at), bool(ended)) for i, n, w, at, ended in rows]

    def running_on_live_workers(self, started: Mapping[str, float]) -> int:
        """Attempts without an outcome that began after their worker's current process
        started (``started``: worker id -> its Unix start time): work really in progress, as
        opposed to attempts of a process that was killed."""
        return sum(1 for _, _, _, w, at in self._sql(INFLIGHT_SQL, {"job": None})
                   if at >= started.get(w, 1e18))

    @property
    def probing(self) -> bool:
        """Whether :meth:`queued` asks the worker's probe (a subprocess: poll it seldom)."""
        return self.probe is not None

    def queued(self, jobs: Collection[str]) -> int:
        """What the worker's system still holds of ``jobs``. With a probe: how many of them it
        finds queued, scheduled or leased (a plugin dispatcher may never fill the queue list;
        one probe run, RuntimeError when it fails). Without: the copies on the harness's queue
        list (``LLEN``), those the default dispatcher put there and no worker took yet."""
        if self.probe is not None:
            state = self.probe()
            return len(set(jobs) & {*state.queued, *state.scheduled,
                                    *(x.job_id for x in state.leased)})
        return self._listed()

    def _listed(self) -> int:
        """Copies on the harness's queue list (not yet taken by a worker)."""
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
