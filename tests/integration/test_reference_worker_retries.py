"""Reference worker: the happy path, retries with backoff, dead letters, the bug-name guard.

Every test runs real worker processes (``python -m reference_worker``) on the real stack and
waits on conditions in the contract tables or the probe, with deadlines from the policy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from harness.contract import BACKOFF_JITTER, crash, db_write, email, fail, job, sleep, worker_env
from harness.services.pool import WorkerPool
from reference_worker.bugs import BUGS
from reference_worker.testing import Tables, policy, run_probe, seconds, send, wait_until, where


def test_completes_a_job_with_every_kind_of_step(chaos_connections, jobchaos_artifacts, tables,
                                                 smtp_sink):
    steps = [sleep(0.05), db_write(), email(), {"op": "cpu", "seconds": 0.05},
             {"op": "alloc", "mb": 8, "hold": 0.0}, db_write()]
    with WorkerPool(chaos_connections, policy(), size=1, logdir=jobchaos_artifacts):
        send(chaos_connections, job("j-1", *steps))
        outcome = tables.wait_terminal(["j-1"], timeout=10)["j-1"]
    assert (outcome.status, outcome.reason, outcome.attempt) == ("completed", None, 1)
    assert [(a.job_id, a.attempt, a.worker) for a in tables.attempts()] == [("j-1", 1, "worker-1")]
    assert sorted(e.step for e in tables.effects("j-1")) == [1, 5]
    [msg] = smtp_sink.wait_for(lambda m: len(m) >= 1, timeout=5)
    assert (msg.job, msg.step, msg.header("X-Chaos-Attempt")) == ("j-1", "2", "1")
    assert run_probe(chaos_connections).queued == ()


def test_retries_a_transient_failure_then_succeeds(chaos_connections, jobchaos_artifacts, tables):
    p = policy(max_tries=3, backoff_base=0.2)
    with WorkerPool(chaos_connections, p, size=1, logdir=jobchaos_artifacts):
        send(chaos_connections, job("j-1", db_write(), fail(times=2)))
        final = tables.wait_terminal(["j-1"], timeout=15)["j-1"]
    outcomes = tables.outcomes("j-1")
    assert [(o.attempt, o.status, o.reason) for o in outcomes] == [
        (1, "retrying", "exception"), (2, "retrying", "exception"), (3, "completed", None)]
    assert "fail on attempt 1" in (outcomes[0].detail or "")
    assert final.attempt == 3
    assert len(tables.effects("j-1")) == 1, "db_write ran on 3 attempts but must exist once"
    _assert_backoff_respected(tables, "j-1", p)


def test_dead_letters_after_exactly_max_tries(chaos_connections, jobchaos_artifacts, tables):
    p = policy(max_tries=4, backoff_base=0.15, backoff_cap=0.3)
    with WorkerPool(chaos_connections, p, size=2, logdir=jobchaos_artifacts):
        send(chaos_connections, job("j-dead", fail(times=None)), job("j-crash", crash(times=9)))
        tables.wait_terminal(["j-dead", "j-crash"], timeout=20)
        time.sleep(p.backoff_cap * 2)  # nothing may run after the dead letter
    for job_id, reason in (("j-dead", "exception"), ("j-crash", "killed")):
        outcomes = tables.outcomes(job_id)
        assert [(o.attempt, o.status) for o in outcomes] == [
            (1, "retrying"), (2, "retrying"), (3, "retrying"), (4, "dead")]
        assert {o.reason for o in outcomes} == {reason}
        assert len(tables.attempts(job_id)) == p.max_tries
        _assert_backoff_respected(tables, job_id, p)
    assert "hard exit with code 70" in (tables.outcomes("j-crash")[0].detail or "")
    state = run_probe(chaos_connections)
    assert {(d.job_id, d.reason) for d in state.dead} == {("j-dead", "exception"),
                                                          ("j-crash", "killed")}
    assert where(state, "j-dead") == ["dead"]


def _assert_backoff_respected(tables: Tables, job_id: str, p) -> None:
    """Each retry starts no sooner than the backoff (less its jitter) after the failure."""
    ends = {o.attempt: o.at for o in tables.outcomes(job_id)}
    for a in tables.attempts(job_id):
        if a.attempt > 1:
            gap = seconds(ends[a.attempt - 1], a.started_at)
            floor = p.backoff(a.attempt - 1) * (1 - BACKOFF_JITTER)
            assert gap >= floor, f"retry {a.attempt - 1} came {gap:.3f} s after, < {floor:.3f} s"


def test_unknown_bug_name_fails_fast_with_the_valid_names(chaos_connections):
    env = {**os.environ, **worker_env(chaos_connections, policy(), "worker-1"),
           "REFERENCE_WORKER_BUGS": "ack_early,no_such_bug"}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "reference_worker"], env=env,
                          capture_output=True, text=True, timeout=30)
    assert time.monotonic() - started < 5
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "no_such_bug" in lines[0]
    assert all(name in lines[0] for name in BUGS)


def test_probe_reports_queued_scheduled_leased_dead_and_locks(chaos_connections,
                                                              jobchaos_artifacts, tables):
    p = policy(max_tries=1, backoff_base=5.0, backoff_cap=5.0, job_timeout=5.0, lease=6.0,
               lock_ttl=8.0)
    send(chaos_connections, job("q-1"), job("q-2"))
    assert run_probe(chaos_connections).queued == ("q-1", "q-2")
    with WorkerPool(chaos_connections, p, size=1, logdir=jobchaos_artifacts):
        send(chaos_connections, job("dead-1", fail(times=None)),
             job("long", sleep(30), unique_key="report-42"), job("late"))
        wait_until(lambda: tables.attempts("long"), timeout=10, what="the long job to start")
        state = run_probe(chaos_connections)
    assert where(state, "dead-1") == ["dead"] and state.dead[0].reason == "exception"
    [lease] = state.leased
    assert (lease.job_id, lease.worker) == ("long", "worker-1")
    assert 0 < lease.expires_in <= p.lease
    [lock] = state.locks
    assert (lock.key, lock.holder) == ("report-42", "long")
    assert lock.ttl is not None and 0 < lock.ttl <= p.lock_ttl
    assert state.queued == ("late",)
