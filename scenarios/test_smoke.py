"""Smoke scenario: the real stack comes up and each server serves a real client.

Guards against the most basic silent failure of a chaos run: a harness whose servers never
really started, so every later scenario "passes" against nothing.
"""

from __future__ import annotations

import smtplib
import uuid

import psycopg
import redis


def test_stack_serves_redis_postgres_and_smtp(redis_url, database_url, smtp_sink,
                                              jobchaos_namespace):
    token = uuid.uuid4().hex

    # Keys under the test's namespace only: on a shared, external Redis the others are a user's.
    jobs, inflight = f"{jobchaos_namespace}:jobs", f"{jobchaos_namespace}:inflight"
    r = redis.Redis.from_url(redis_url)
    r.rpush(jobs, token)
    assert r.lmove(jobs, inflight, "LEFT", "RIGHT") == token.encode()

    with psycopg.connect(database_url) as conn:
        conn.execute("CREATE TABLE effects (job_id text PRIMARY KEY)")
        conn.execute("INSERT INTO effects VALUES (%s)", (token,))
        assert conn.execute("SELECT job_id FROM effects").fetchall() == [(token,)]

    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=10) as smtp:
        smtp.sendmail("worker@jobchaos.test", ["user@jobchaos.test"],
                      f"X-Chaos-Job: {token}\r\nX-Chaos-Step: 1\r\nSubject: smoke\r\n\r\nhello\r\n")
    [message] = smtp_sink.wait_for(lambda msgs: len(msgs) >= 1, timeout=10)
    assert (message.job, message.step) == (token, "1")
