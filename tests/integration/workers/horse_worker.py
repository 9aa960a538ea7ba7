"""A worker built the way RQ's is: the main process takes a job, records the attempt and forks
a "work horse" that leaves the process group (``os.setpgrp()``) and runs the job's steps; the
horse has no death signal, so it outlives a worker killed by process group. One try, no
lease, no probe: just enough of the contract for the harness's kills and memory limits."""

from __future__ import annotations

import json
import os
import time

import psycopg
import redis

queue = os.environ["CHAOS_QUEUE"]
worker = os.environ["CHAOS_WORKER_ID"]
database_url = os.environ["CHAOS_DATABASE_URL"]
r = redis.Redis.from_url(os.environ["CHAOS_REDIS_URL"])


def horse(job: dict, attempt_id: int) -> None:
    os.setpgrp()  # as RQ's work horse does: a kill of the worker's group misses it
    with psycopg.connect(database_url, autocommit=True) as db:
        for index, step in enumerate(job["steps"]):
            if step["op"] == "sleep":
                time.sleep(float(step["seconds"]))
            elif step["op"] == "alloc":
                block = bytearray(int(step["mb"]) * 1024 * 1024)
                block[::4096] = b"\x01" * len(range(0, len(block), 4096))
                time.sleep(float(step.get("hold") or 0.0))
            elif step["op"] == "db_write":
                db.execute("INSERT INTO chaos_effects (job_id, step, attempt, worker, "
                           "attempt_id) VALUES (%s, %s, 1, %s, %s)",
                           (job["id"], index, worker, attempt_id))


with psycopg.connect(database_url, autocommit=True) as db:
    while True:
        item = r.brpop([queue], timeout=1)
        if item is None:
            continue
        job = json.loads(item[1])
        [(attempt_id,)] = db.execute(
            "INSERT INTO chaos_attempts (job_id, attempt, worker) VALUES (%s, 1, %s) "
            "RETURNING id", (job["id"], worker)).fetchall()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                horse(job, attempt_id)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            outcome = ("completed", None, None)
        else:
            sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            outcome = ("dead", "killed", f"the horse ended with status {status} (signal {sig})")
        db.execute("INSERT INTO chaos_outcomes (job_id, attempt, worker, attempt_id, status, "
                   "reason, detail) VALUES (%s, 1, %s, %s, %s, %s, %s)",
                   (job["id"], worker, attempt_id, *outcome))
