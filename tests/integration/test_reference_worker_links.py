"""Reference worker: reconnects after each link is cut, and never stops consuming.

Each server is stopped and started again on the same port (``stopped()``) while a worker runs:
Redis for 5 s (it comes back empty: no persistence), PostgreSQL and the SMTP sink for shorter
outages. Work in flight during the outage is recorded exactly once and work dispatched after
it is consumed.
"""

from __future__ import annotations

import dataclasses
import socket
import time

import pytest

import harness.services.base
from harness.contract import db_write, email, job, sleep
from harness.services.base import free_port
from harness.services.pool import WorkerPool
from reference_worker.testing import policy, send, wait_until


@pytest.fixture(autouse=True)
def _restart_despite_time_wait(monkeypatch):
    """Work around a harness gap: ``Service.stopped()`` re-checks the port with a bind that has
    no SO_REUSEADDR, which fails while the stopped server's own closed connections sit in
    TIME_WAIT (always, when clients were connected). The servers themselves reuse the port."""

    def port_is_free(host: str, port: int) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                return False
        return True

    monkeypatch.setattr(harness.services.base, "port_is_free", port_is_free)


def _log(pool: WorkerPool) -> str:
    return pool[0].log_path.read_text()


def test_redis_gone_for_5_s_then_back_empty(chaos_connections, jobchaos_stack, jobchaos_artifacts,
                                            tables):
    p = policy(job_timeout=4.0, lease=5.0)
    with WorkerPool(chaos_connections, p, size=1, logdir=jobchaos_artifacts) as pool:
        send(chaos_connections, job("before", db_write()), job("inflight", sleep(1.0), db_write()))
        tables.wait_terminal(["before"], timeout=10)
        wait_until(lambda: tables.attempts("inflight"), timeout=10, what="'inflight' to start")
        with jobchaos_stack.redis.stopped():
            wait_until(lambda: "link down" in _log(pool), timeout=5,
                       what="the worker to notice Redis is gone")
            tables.wait_terminal(["inflight"], timeout=5)  # its outcome goes to PostgreSQL
            time.sleep(5.0)  # the outage the brief asks a worker to outlive
        # Redis is back, empty. New work is consumed; a re-dispatch of finished work is not.
        send(chaos_connections, job("after", db_write()), job("before", db_write()))
        tables.wait_terminal(["after"], timeout=10)
        wait_until(lambda: "link back" in _log(pool), timeout=5, what="the reconnect log")
        wait_until(lambda: "before: duplicate dispatch of a job already completed" in _log(pool),
                   timeout=5, what="the re-dispatch of 'before' to be dropped")
    for job_id in ("before", "inflight", "after"):
        assert [o.status for o in tables.outcomes(job_id)] == ["completed"], job_id
        assert len(tables.effects(job_id)) == 1, job_id
    assert [a.attempt for a in tables.attempts("before")] == [1]


def test_postgres_gone_then_back(chaos_connections, jobchaos_stack, jobchaos_artifacts, tables):
    p = policy(job_timeout=3.0, lease=4.0, max_tries=3)
    with WorkerPool(chaos_connections, p, size=1, logdir=jobchaos_artifacts) as pool:
        send(chaos_connections, job("inflight", sleep(0.5), db_write()))
        wait_until(lambda: tables.attempts("inflight"), timeout=10, what="'inflight' to start")
        with jobchaos_stack.postgres.stopped():
            send(chaos_connections, job("during", db_write()))
            wait_until(lambda: "link down" in _log(pool), timeout=10,
                       what="the worker to notice PostgreSQL is gone")
            time.sleep(1.0)
        tables.wait_terminal(["inflight", "during"], timeout=20)
        wait_until(lambda: "link back" in _log(pool), timeout=5, what="the reconnect log")
    # 'inflight' lost its database mid-attempt: that attempt failed and was retried.
    statuses = [o.status for o in tables.outcomes("inflight")]
    assert statuses[-1] == "completed" and set(statuses[:-1]) <= {"retrying"}
    assert [o.status for o in tables.outcomes("during")] == ["completed"]
    for job_id in ("inflight", "during"):
        assert len(tables.effects(job_id)) == 1, job_id


def test_smtp_gone_then_back_the_email_is_retried_until_sent(chaos_connections, jobchaos_stack,
                                                             jobchaos_artifacts, tables):
    p = policy(max_tries=8, backoff_base=0.3, backoff_cap=0.6)
    with WorkerPool(chaos_connections, p, size=1, logdir=jobchaos_artifacts):
        with jobchaos_stack.smtp.stopped():
            send(chaos_connections, job("mail", db_write(), email()))
            wait_until(lambda: len(tables.outcomes("mail")) >= 2, timeout=10,
                       what="failed attempts while the SMTP server is away")
        # The sink restarted with a fresh message log.
        tables.wait_terminal(["mail"], timeout=15)
    outcomes = tables.outcomes("mail")
    assert outcomes[-1].status == "completed"
    assert {(o.status, o.reason) for o in outcomes[:-1]} == {("retrying", "exception")}
    assert len(tables.effects("mail")) == 1
    sent = [m for m in jobchaos_stack.messages(0) if m.job == "mail"]
    assert [m.header("X-Chaos-Attempt") for m in sent] == [str(outcomes[-1].attempt)]


def test_smtp_refusing_fails_the_attempt_and_dead_letters(chaos_connections, jobchaos_artifacts,
                                                          tables):
    nowhere = dataclasses.replace(chaos_connections, smtp_port=free_port())
    with WorkerPool(nowhere, policy(max_tries=2), size=1, logdir=jobchaos_artifacts):
        send(nowhere, job("unsent", email()))
        tables.wait_terminal(["unsent"], timeout=10)
    assert [(o.status, o.reason) for o in tables.outcomes("unsent")] == [
        ("retrying", "exception"), ("dead", "exception")]


def test_an_attempt_cut_off_from_redis_stops_before_its_lease_can_expire(
        chaos_connections, jobchaos_stack, jobchaos_artifacts, tables):
    # A worker that cannot renew its lease must stop the attempt before the lease can expire:
    # a reaper may then hand the job to another worker, and two attempts must never overlap.
    p = policy(job_timeout=8.0, lease=1.5)
    with WorkerPool(chaos_connections, p, size=1, logdir=jobchaos_artifacts):
        send(chaos_connections, job("cut", sleep(4.0), db_write()))
        wait_until(lambda: tables.attempts("cut"), timeout=10, what="'cut' to start")
        with jobchaos_stack.redis.stopped():
            cut = time.time()
            [outcome] = wait_until(lambda: tables.outcomes("cut"), timeout=3 * p.lease,
                                   what="the attempt to stop itself")
            [attempt] = tables.attempts("cut")
    assert (outcome.status, outcome.reason) == ("retrying", "killed")
    assert "not renewed" in (outcome.detail or ""), outcome.detail
    # Every lease Redis granted was granted before the cut: none could expire sooner.
    assert attempt.stopped_at is not None and attempt.stopped_at.timestamp() < cut + p.lease
    assert tables.effects("cut") == []
