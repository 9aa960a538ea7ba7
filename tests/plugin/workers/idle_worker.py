"""A worker that signals readiness and then never takes a job (it reads no queue at all): the
harness must notice that nothing is consumed and stop the session once."""

from __future__ import annotations

import os
import time

import psycopg

with psycopg.connect(os.environ["CHAOS_REPORT_DATABASE_URL"], autocommit=True) as db:
    db.execute("INSERT INTO chaos_ready (worker, pid) VALUES (%s, %s)",
               (os.environ["CHAOS_WORKER_ID"], os.getpid()))
while True:
    time.sleep(60)
