"""A worker that takes jobs and records each attempt, then never finishes one nor reports an
outcome, and has no probe: the harness cannot tell lost from stuck, so a verdict is unknown."""

from __future__ import annotations

import json
import os
import time

import psycopg
import redis

queue = os.environ["CHAOS_QUEUE"]
worker = os.environ["CHAOS_WORKER_ID"]
r = redis.Redis.from_url(os.environ["CHAOS_REDIS_URL"])
with psycopg.connect(os.environ["CHAOS_DATABASE_URL"], autocommit=True) as db:
    db.execute("INSERT INTO chaos_ready (worker, pid) VALUES (%s, %s)", (worker, os.getpid()))
    while True:
        item = r.brpop([queue], timeout=1)
        if item is None:
            continue
        job = json.loads(item[1])
        db.execute("INSERT INTO chaos_attempts (job_id, attempt, worker) VALUES (%s, 1, %s)",
                   (job["id"], worker))
        time.sleep(0.01)
