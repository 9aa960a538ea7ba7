"""Reference worker: recovery from dead workers, shutdowns, held locks and duplicate dispatch.

A SIGKILLed worker's job is reclaimed by another worker's reaper with its effect exactly once;
SIGTERM shuts down warm (the job finishes) and, a second time, cold (the job is given back);
a dead holder's uniqueness lock expires; a job id dispatched twice runs once.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psutil
import redis

from harness.contract import db_write, email, fail, job, sleep
from harness.services.pool import WorkerPool
from reference_worker.memory import CGROUP_PREFIX, memory_cgroup_dir
from reference_worker.testing import Tables, policy, run_probe, seconds, send, wait_until, where


def _holder(pool: WorkerPool, tables: Tables, job_id: str, attempt: int = 1) -> int:
    """Index in ``pool`` of the worker that runs ``attempt`` of ``job_id``."""
    row = wait_until(lambda: next((a for a in tables.attempts(job_id) if a.attempt == attempt),
                                  None), timeout=10, what=f"{job_id} attempt {attempt} to start")
    return int(row.worker.rsplit("-", 1)[1]) - 1


def _own_cgroup(pid: int | None) -> Path | None:
    """The memory cgroup a reference worker made for itself, if it made one."""
    parent = memory_cgroup_dir()
    if parent is None or pid is None:
        return None
    found = list(parent.glob(f"{CGROUP_PREFIX}*-{pid}"))
    return found[0] if found else None


def test_sigkilled_worker_job_is_reclaimed_by_the_reaper_effects_once(
        chaos_connections, jobchaos_artifacts, tables, smtp_sink):
    p = policy(job_timeout=3.0, lease=1.5)
    with WorkerPool(chaos_connections, p, size=2, logdir=jobchaos_artifacts) as pool:
        send(chaos_connections, job("orphan", db_write(), sleep(1.0), email()))
        victim = pool[_holder(pool, tables, "orphan")]
        wait_until(lambda: tables.effects("orphan"), timeout=5, what="the effect of attempt 1")
        [child] = psutil.Process(victim.pid).children()
        stale = _own_cgroup(victim.pid)
        victim.kill()
        psutil.wait_procs([child], timeout=5)  # PR_SET_PDEATHSIG: the job dies with its worker
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
        tables.wait_terminal(["orphan"], timeout=15)
        pool.restart_dead()  # as a supervisor would; the new worker sweeps the old cgroup
        if stale is not None:
            wait_until(lambda: not stale.exists(), timeout=5, what=f"{stale} to be swept")
    outcomes = tables.outcomes("orphan")
    assert [(o.attempt, o.worker, o.status, o.reason) for o in outcomes] == [
        (1, victim.worker_id, "retrying", "lease_lost"), (2, outcomes[1].worker, "completed", None)]
    assert outcomes[1].worker != victim.worker_id
    assert len(tables.effects("orphan")) == 1, "db_write must be exactly once across the crash"
    assert [m.step for m in smtp_sink.messages() if m.job == "orphan"] == ["2"]
    # Every row names its attempt's identity, the reaper's lease_lost row too.
    ids = _identities(tables, "orphan")
    assert [ids[n] for n in (1, 2)] == _ids(tables, "chaos_outcomes", "orphan")
    assert [ids[1]] == _ids(tables, "chaos_effects", "orphan")
    assert [m.attempt_id for m in smtp_sink.messages() if m.job == "orphan"] == [ids[2]]


def _identities(tables: Tables, job_id: str) -> dict[int, int]:
    """Attempt number -> the id of its ``chaos_attempts`` row."""
    rows = tables.conn.execute("SELECT attempt, id FROM chaos_attempts WHERE job_id = %s",
                               (job_id,)).fetchall()
    return dict(rows)


def _ids(tables: Tables, table: str, job_id: str) -> list[int | None]:
    """The ``attempt_id`` of each row of ``table`` for ``job_id``, in order."""
    return [r[0] for r in tables.conn.execute(
        f"SELECT attempt_id FROM {table} WHERE job_id = %s ORDER BY id", (job_id,))]


def test_heartbeat_keeps_a_job_longer_than_the_lease_with_one_owner(chaos_connections,
                                                                    jobchaos_artifacts, tables):
    p = policy(job_timeout=5.0, lease=1.5)  # the heartbeat every 0.5 s must keep it
    with WorkerPool(chaos_connections, p, size=2, logdir=jobchaos_artifacts):
        send(chaos_connections, job("long", sleep(4.0)))
        tables.wait_terminal(["long"], timeout=15)
    assert [a.attempt for a in tables.attempts("long")] == [1], "the lease was never lost"
    assert [o.status for o in tables.outcomes("long")] == ["completed"]


def test_warm_shutdown_finishes_the_job_in_flight_and_fetches_no_more(
        chaos_connections, jobchaos_artifacts, tables):
    p = policy(job_timeout=3.0, lease=4.0, shutdown_grace=3.0)
    pool = WorkerPool(chaos_connections, p, size=1, logdir=jobchaos_artifacts).start()
    try:
        send(chaos_connections, job("inflight", sleep(0.8), db_write()), job("next"))
        _holder(pool, tables, "inflight")
        pool[0].signal(signal.SIGTERM)
        assert pool[0].wait(timeout=5) == 0
    finally:
        pool.stop()
    assert [(o.status, o.reason) for o in tables.outcomes("inflight")] == [("completed", None)]
    assert len(tables.effects("inflight")) == 1
    assert tables.attempts("next") == []
    assert run_probe(chaos_connections).queued == ("next",)


def test_cold_shutdown_gives_the_job_back_and_a_restarted_worker_finishes_it(
        chaos_connections, jobchaos_artifacts, tables):
    p = policy(job_timeout=4.0, lease=5.0, shutdown_grace=3.0)
    pool = WorkerPool(chaos_connections, p, size=1, logdir=jobchaos_artifacts).start()
    try:
        send(chaos_connections, job("given-back", db_write(), sleep(1.5)))
        _holder(pool, tables, "given-back")
        wait_until(lambda: tables.effects("given-back"), timeout=5, what="the effect")
        pool[0].signal(signal.SIGTERM)
        time.sleep(0.1)  # two separate signals, as from a supervisor's stop then kill -TERM
        pool[0].signal(signal.SIGTERM)
        started = time.monotonic()
        assert pool[0].wait(timeout=5) == 0
        assert time.monotonic() - started < 1.5, "a cold shutdown must not wait for the job"
        [first] = tables.outcomes("given-back")
        assert (first.status, first.reason) == ("retrying", "killed")
        assert "cold shutdown" in (first.detail or "")
        assert where(run_probe(chaos_connections), "given-back") == ["scheduled"]
        pool[0].restart()
        tables.wait_terminal(["given-back"], timeout=15)
    finally:
        pool.stop()
    assert [(o.attempt, o.status) for o in tables.outcomes("given-back")] == [
        (1, "retrying"), (2, "completed")]
    assert len(tables.effects("given-back")) == 1


def test_a_dead_holders_lock_expires_and_same_key_jobs_never_overlap(
        chaos_connections, jobchaos_artifacts, tables):
    p = policy(job_timeout=2.0, lease=2.5, lock_ttl=1.5)
    with WorkerPool(chaos_connections, p, size=2, logdir=jobchaos_artifacts) as pool:
        send(chaos_connections, job("first", sleep(1.0), unique_key="report-42"))
        victim = pool[_holder(pool, tables, "first")]
        victim.kill()
        killed_at = time.time()
        send(chaos_connections, job("second", db_write(), unique_key="report-42"))
        tables.wait_terminal(["second", "first"], timeout=20)
        assert run_probe(chaos_connections).locks == ()
    [second] = tables.attempts("second")
    waited = second.started_at.timestamp() - killed_at
    assert waited > 0.5, f"'second' ran {waited:.2f} s after the holder died, inside its lock"
    assert waited < p.lock_ttl + 1.0, "the dead holder's lock must expire within lock_ttl"
    # The re-run of "first" and "second" never held the key at the same time.
    runs = []
    for job_id in ("first", "second"):
        ends = {o.attempt: o.at for o in tables.outcomes(job_id)}
        runs += [(a.started_at, ends[a.attempt]) for a in tables.attempts(job_id)
                 if a.worker != victim.worker_id]
    (_, first_end), (second_start, _) = sorted(runs)
    assert seconds(first_end, second_start) >= 0, "two jobs with the same unique_key overlapped"


def test_a_job_id_dispatched_twice_runs_once(chaos_connections, jobchaos_artifacts, tables,
                                             smtp_sink):
    p = policy(backoff_base=1.0, backoff_cap=1.0)
    client = redis.Redis.from_url(chaos_connections.redis_url)
    with WorkerPool(chaos_connections, p, size=2, logdir=jobchaos_artifacts):
        # Concurrent: both copies are on the queue at once, for two idle workers.
        send(chaos_connections, job("twin", sleep(0.3), db_write(), email()),
             job("twin", sleep(0.3), db_write(), email()))
        # Sequential: a copy after the first finished.
        tables.wait_terminal(["twin"], timeout=10)
        send(chaos_connections, job("twin", sleep(0.3), db_write(), email()))
        # While scheduled for a retry.
        send(chaos_connections, job("retried", fail(times=1), email()))
        wait_until(lambda: where(run_probe(chaos_connections), "retried") == ["scheduled"],
                   timeout=10, what="'retried' to be scheduled for its retry")
        send(chaos_connections, job("retried", fail(times=1), email()))
        tables.wait_terminal(["retried"], timeout=10)
        wait_until(lambda: client.llen(chaos_connections.queue) == 0, timeout=5,
                   what="the queue to drain")
    client.close()
    assert [(a.attempt) for a in tables.attempts("twin")] == [1]
    assert [o.status for o in tables.outcomes("twin")] == ["completed"]
    assert len(tables.effects("twin")) == 1
    assert [a.attempt for a in tables.attempts("retried")] == [1, 2]
    assert [m.job for m in smtp_sink.messages()].count("twin") == 1
    assert [m.job for m in smtp_sink.messages()].count("retried") == 1
