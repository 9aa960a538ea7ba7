"""External mode leaves a user's servers as it found them.

A stack this test owns plays "the user's servers": a Redis holding the user's keys (among them
``jobs`` and ``inflight``, which the smoke scenario once used bare, and a ``jc:`` key that is not
ours) and a PostgreSQL holding the user's database. Real scenarios then run against it in
external mode (Redis and PostgreSQL; the SMTP sink stays embedded, its messages are needed),
and afterwards every key and database of the user is unchanged and nothing of ours is left.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import redis

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ["scenarios/test_smoke.py",
             "scenarios/test_worker_crash.py::test_sigkill_between_effect_and_ack"]
USER_ROWS = [(1, "invoice"), (2, "refund")]


def _seed(r: redis.Redis, admin_url: str, userdb_url: str) -> None:
    r.rpush("jobs", "user-job-1", "user-job-2")
    r.rpush("inflight", "user-job-0")
    r.set("user:config", "keep me")
    r.hset("jc:not-ours", mapping={"owner": "the user"})
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE userdb")
        conn.execute("CREATE TABLE user_table (n int)")  # in the admin database itself
    with psycopg.connect(userdb_url) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, what text)")
        conn.cursor().executemany("INSERT INTO orders VALUES (%s, %s)", USER_ROWS)


def _redis_state(r: redis.Redis) -> dict[bytes, bytes]:
    return {key: r.dump(key) for key in r.scan_iter(count=1000)}


def _pg_state(admin_url: str, userdb_url: str) -> tuple[object, ...]:
    with psycopg.connect(admin_url) as conn:
        databases = sorted(row[0] for row in conn.execute(
            "SELECT datname FROM pg_database WHERE NOT datistemplate"))
        tables = sorted(row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
    with psycopg.connect(userdb_url) as conn:
        rows = conn.execute("SELECT id, what FROM orders ORDER BY id").fetchall()
        user_tables = sorted(row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
    return databases, tables, rows, user_tables


def test_external_run_leaves_the_users_servers_as_it_found_them(jobchaos_stack_factory,
                                                                tmp_path: Path):
    users = jobchaos_stack_factory(name="user")
    redis_url = users.redis.url(0)
    admin_url = users.postgres.url("postgres")
    userdb_url = users.postgres.url("userdb")
    r = redis.Redis.from_url(redis_url)
    _seed(r, admin_url, userdb_url)
    redis_before, pg_before = _redis_state(r), _pg_state(admin_url, userdb_url)
    assert len(redis_before) == 4 and "userdb" in pg_before[0]

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JOBCHAOS_", "PYTEST_XDIST")) and k != "TOXIPROXY_URL"}
    env["JOBCHAOS_ARTIFACTS_DIR"] = str(tmp_path / "artifacts")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", "-q",
         f"--jobchaos-redis-url={redis_url}", f"--jobchaos-database-url={admin_url}",
         *SCENARIOS],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed" in run.stdout, run.stdout

    assert _redis_state(r) == redis_before  # the user's keys as they were, no key of ours
    assert _pg_state(admin_url, userdb_url) == pg_before  # no database or table of ours
