"""Jobs per second of the reference worker, side by side with RQ on the same Redis.

Two workloads: ``noop`` (a job with no steps) and ``db_write`` (one exactly-once effect: the
effect row and its dedupe key in one statement). Each runs with 1 and 2 worker processes. The
RQ side runs RQ's default forking ``Worker`` (``rq worker``) on a job function doing the same
``db_write`` with the same dedupe statement, so both fork a child per job and both keep
effects exactly once. Workers are started idle first; the clock runs from dispatch until
every job has finished (reference: a ``completed`` outcome row; RQ: in the finished registry).

Where the time goes: both fork a child per job (about 1.5-2.5 ms here, growing with the
parent's resident memory). For ``db_write`` RQ's job function opens a PostgreSQL connection
in its work horse, as a job would; the reference worker's child hands the write to its
worker's effects thread, which keeps one connection open (PostgreSQL forks a backend for every
new connection: a few ms). The reference worker also records every attempt and outcome in
PostgreSQL (two statements per job) that RQ does not.

    python benchmarks/worker_throughput.py [--jobs 400] [--workers 1 2]

Target: the reference worker at least as fast as RQ, with exactly one effect row per job.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import psycopg  # noqa: E402 - preloaded in RQ's parent too, see PreloadedWorker
from rq import Worker as PreloadedWorker  # noqa: E402

from reference_worker import ledger  # noqa: E402

RQ_QUEUE = "bench-rq"
# `rq worker --worker-class worker_throughput.PreloadedWorker` makes RQ's parent import this
# module, so psycopg and the ledger are loaded once before it forks, as in the reference worker
# (whose children fork from a parent that has them). Without it each RQ work horse would import
# psycopg afresh, and RQ would look several times slower than it is.
__all__ = ["PreloadedWorker", "rq_db_write", "rq_noop"]


# -- the RQ side's job functions (imported by `rq worker -P benchmarks`) ------------------------
def rq_noop() -> None:
    return None


def rq_db_write(database_url: str, job_id: str) -> None:
    """The same exactly-once db_write as the reference worker's step, in RQ's work horse."""
    conn = ledger.connect(database_url, 5.0)
    try:
        ledger.write_effect(conn, job_id, 0, 1, "rq")
    finally:
        conn.close()


# -- the benchmark ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    workload: str
    workers: int
    rate: float
    effects: int | None = None  # effect rows written (db_write)
    distinct: int | None = None  # distinct (job, step) among them


def wait_for(count: Callable[[], int], target: int, timeout: float) -> float:
    """Poll ``count()`` until it reaches ``target``; return the time it took."""
    started = time.perf_counter()
    while count() < target:
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"only {count()} of {target} jobs done after {timeout} s")
        time.sleep(0.005)
    return time.perf_counter() - started


def effect_counts(conn: object) -> tuple[int, int]:
    row = conn.execute("SELECT count(*), count(DISTINCT (job_id, step)) "  # type: ignore[attr-defined]
                       "FROM chaos_effects").fetchone()
    return int(row[0]), int(row[1])


def run_reference(stack: object, workload: str, workers: int, jobs: int, logdir: Path) -> Run:
    import redis

    from harness.contract import Connections, Policy, db_write, dispatch, job
    from harness.services.pool import WorkerPool

    name, db_url = stack.fresh_database()  # type: ignore[attr-defined]
    conn = Connections(stack.fresh_redis_url(), db_url, stack.smtp.host,  # type: ignore[attr-defined]
                       stack.smtp.port, "bench:queue")  # type: ignore[attr-defined]
    steps = (db_write(),) if workload == "db_write" else ()
    batch = [job(f"{workload}-{i}", *steps) for i in range(jobs)]
    policy = Policy(job_timeout=10.0, lease=15.0)
    with psycopg.connect(db_url, autocommit=True) as db, \
            WorkerPool(conn, policy, size=workers, logdir=logdir / f"ref-{workload}-{workers}"):
        client = redis.Redis.from_url(conn.redis_url)
        wait_for(lambda: int(db.execute("SELECT count(*) FROM pg_tables WHERE tablename = "
                                        "'reference_worker_dedupe'").fetchone()[0]), 1, 30)
        started = time.perf_counter()
        dispatch(client, conn.queue, batch)
        wait_for(lambda: int(db.execute("SELECT count(*) FROM chaos_outcomes WHERE status = "
                                        "'completed'").fetchone()[0]), jobs, 300)
        elapsed = time.perf_counter() - started
        effects = effect_counts(db) if workload == "db_write" else (None, None)
        client.close()
    stack.drop_database(name)  # type: ignore[attr-defined]
    return Run(workload, workers, jobs / elapsed, *effects)


def run_rq(stack: object, workload: str, workers: int, jobs: int, logdir: Path) -> Run:
    import redis
    from rq import Queue

    from harness import procs

    name, db_url = stack.fresh_database()  # type: ignore[attr-defined]
    redis_url = stack.fresh_redis_url()  # type: ignore[attr-defined]
    client = redis.Redis.from_url(redis_url)
    queue = Queue(RQ_QUEUE, connection=client)
    logdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)])}
    argv = [sys.executable, "-m", "rq.cli", "worker", "--url", redis_url, "--path", str(HERE),
            "--worker-class", "worker_throughput.PreloadedWorker",
            "--logging_level", "WARNING", "--disable-job-desc-logging", RQ_QUEUE]
    started_workers = [procs.spawn([*argv, "--name", f"rq-{i}"], env=env,
                                   log_path=logdir / f"rq-{workload}-{workers}-{i}.log")
                       for i in range(workers)]
    try:
        with psycopg.connect(db_url, autocommit=True) as db:
            ledger.create_schema(db)  # the same dedupe table the reference worker creates
            wait_for(lambda: len(client.smembers(f"rq:workers:{RQ_QUEUE}")), workers, 30)
            started = time.perf_counter()
            with client.pipeline() as pipe:
                for i in range(jobs):
                    if workload == "db_write":
                        queue.enqueue("worker_throughput.rq_db_write", db_url, f"{workload}-{i}",
                                      pipeline=pipe)
                    else:
                        queue.enqueue("worker_throughput.rq_noop", pipeline=pipe)
                pipe.execute()
            wait_for(lambda: _rq_done(queue), jobs, 120)
            elapsed = time.perf_counter() - started
            effects = effect_counts(db) if workload == "db_write" else (None, None)
    finally:
        for proc in started_workers:
            procs.terminate(proc, timeout=5)
        client.close()
    stack.drop_database(name)  # type: ignore[attr-defined]
    return Run(workload, workers, jobs / elapsed, *effects)


def _rq_done(queue: object) -> int:
    """Jobs RQ finished; a failed job stops the run with its traceback."""
    failed = queue.failed_job_registry  # type: ignore[attr-defined]
    if failed.count:
        job = queue.fetch_job(failed.get_job_ids()[0])  # type: ignore[attr-defined]
        raise RuntimeError(f"an RQ job failed:\n{job.latest_result().exc_string}")
    return int(queue.finished_job_registry.count)  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=400, help="jobs per run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--workloads", nargs="+", default=["noop", "db_write"],
                        choices=["noop", "db_write"])
    args = parser.parse_args()

    from harness.config import Config
    from harness.contract import SCHEMA_SQL
    from harness.services.stack import Stack

    work = Path(tempfile.mkdtemp(prefix="jobchaos-bench-workers-"))
    stack = Stack(Config(), work / "stack", name="bench").start(schema_sql=SCHEMA_SQL)
    rows = []
    try:
        for workload in args.workloads:
            for workers in args.workers:
                ref = run_reference(stack, workload, workers, args.jobs, work / "logs")
                rq = run_rq(stack, workload, workers, args.jobs, work / "logs")
                rows.append((ref, rq))
                print(f"  {workload:8} x{workers}: reference {ref.rate:7.1f} jobs/s, "
                      f"rq {rq.rate:7.1f} jobs/s", flush=True)
    finally:
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{args.jobs} jobs per run; jobs/s from dispatch to the last job finished; "
          f"{os.cpu_count()} CPUs (shared: figures vary from run to run)\n")
    print(f"{'workload':10} {'workers':>7} {'reference':>10} {'rq':>8} {'ratio':>7}  effects "
          "(reference / rq)")
    for ref, rq in rows:
        effects = "-"
        if ref.effects is not None:
            once = "exactly once" if ref.effects == ref.distinct == args.jobs else "NOT ONCE"
            effects = f"{ref.effects} / {rq.effects} rows, reference {once}"
        print(f"{ref.workload:10} {ref.workers:>7} {ref.rate:>10.1f} {rq.rate:>8.1f} "
              f"{ref.rate / rq.rate:>6.2f}x  {effects}")


if __name__ == "__main__":
    main()
