"""Bug switches that duplicate work, hammer, or hold on forever: each really happens.

Duplicated effects, retries past the policy or without backoff, a lock a dead holder keeps,
a job run twice at once because its lease was shorter than its runtime, a duplicate dispatch
run again.
"""

from __future__ import annotations

import time

from harness.contract import crash, db_write, email, fail, job, sleep
from harness.services.pool import WorkerPool
from reference_worker.testing import bugs_env, policy, run_probe, seconds, send, wait_until


def test_effects_not_idempotent_writes_the_effect_twice(chaos_connections, jobchaos_artifacts,
                                                        tables):
    with WorkerPool(chaos_connections, policy(), size=1, logdir=jobchaos_artifacts,
                    extra_env=bugs_env("effects_not_idempotent")):
        send(chaos_connections, job("twice", db_write(), crash(times=1)))
        tables.wait_terminal(["twice"], timeout=10)
    assert [(o.attempt, o.status, o.reason) for o in tables.outcomes("twice")] == [
        (1, "retrying", "killed"), (2, "completed", None)]
    assert [e.attempt for e in tables.effects("twice")] == [1, 2], "one effect row per attempt"


def test_unbounded_retries_goes_past_max_tries(chaos_connections, jobchaos_artifacts, tables):
    p = policy(max_tries=2, backoff_base=0.05, backoff_cap=0.05)
    with WorkerPool(chaos_connections, p, size=1, logdir=jobchaos_artifacts,
                    extra_env=bugs_env("unbounded_retries")):
        send(chaos_connections, job("forever", fail(times=None)))
        wait_until(lambda: len(tables.attempts("forever")) >= 2 * p.max_tries, timeout=10,
                   what="more attempts than max_tries")
    assert {o.status for o in tables.outcomes("forever")} == {"retrying"}, "never dead-lettered"


def test_no_backoff_retries_at_once(chaos_connections, jobchaos_artifacts, tables):
    p = policy(max_tries=3, backoff_base=1.0, backoff_cap=2.0)
    with WorkerPool(chaos_connections, p, size=1, logdir=jobchaos_artifacts,
                    extra_env=bugs_env("no_backoff")):
        send(chaos_connections, job("hammer", fail(times=None)))
        tables.wait_terminal(["hammer"], timeout=5)  # < the 1 s + 2 s the backoff asks for
    ends = {o.attempt: o.at for o in tables.outcomes("hammer")}
    gaps = [seconds(ends[a.attempt - 1], a.started_at) for a in tables.attempts("hammer")
            if a.attempt > 1]
    assert len(gaps) == 2 and all(g < 0.5 * p.backoff_base for g in gaps), gaps


def test_lock_never_expires_blocks_the_key_after_the_holder_dies(chaos_connections,
                                                                 jobchaos_artifacts, tables):
    p = policy(job_timeout=2.0, lease=2.5, lock_ttl=1.0)
    with WorkerPool(chaos_connections, p, size=2, logdir=jobchaos_artifacts,
                    extra_env=bugs_env("lock_never_expires")) as pool:
        send(chaos_connections, job("holder", sleep(1.0), unique_key="report-42"))
        row = wait_until(lambda: tables.attempts("holder"), timeout=10, what="holder to start")[0]
        pool[int(row.worker.rsplit("-", 1)[1]) - 1].kill()
        send(chaos_connections, job("blocked", db_write(), unique_key="report-42"))
        time.sleep(p.lease + 3 * p.lock_ttl)  # well past the lock's bound and the lease
        state = run_probe(chaos_connections)
    [lock] = state.locks
    assert (lock.key, lock.ttl, lock.holder) == ("report-42", None, "holder")
    assert tables.attempts("blocked") == [], "the key stays blocked forever"
    assert "blocked" in state.scheduled


def test_lease_shorter_than_timeout_runs_one_job_twice_at_once(chaos_connections,
                                                               jobchaos_artifacts, tables,
                                                               smtp_sink):
    p = policy(job_timeout=4.0, lease=5.0, max_tries=2, backoff_base=0.05)
    with WorkerPool(chaos_connections, p, size=2, logdir=jobchaos_artifacts,
                    extra_env=bugs_env("lease_shorter_than_timeout")):
        # The bug's lease is 2 s; the job runs 3 s, so a reaper (every 1 s) reclaims it.
        send(chaos_connections, job("double", sleep(3.0), email()))
        # Attempt 1 sends its email after 3 s; by then attempt 2 runs elsewhere. (Attempt 2
        # then finds the email recorded and does not send it again: the ledger guards it.)
        messages = smtp_sink.wait_for(lambda m: any(
            x.job == "double" and x.attempt == 1 for x in m), timeout=15)
        wait_until(lambda: len(tables.attempts("double")) >= 2, timeout=5,
                   what="a second attempt")
    first, second = tables.attempts("double")[:2]
    assert first.worker != second.worker
    [first_mail] = [m for m in messages if m.job == "double" and m.attempt == 1]
    assert first_mail.received_at > second.started_at.timestamp(), \
        "attempt 2 started while attempt 1 was still running"


def test_no_dedupe_runs_a_duplicate_dispatch_again(chaos_connections, jobchaos_artifacts, tables,
                                                   smtp_sink):
    with WorkerPool(chaos_connections, policy(), size=1, logdir=jobchaos_artifacts,
                    extra_env=bugs_env("no_dedupe")):
        send(chaos_connections, job("again", email()))
        tables.wait_terminal(["again"], timeout=10)
        send(chaos_connections, job("again", email()))
        wait_until(lambda: [o.status for o in tables.outcomes("again")].count("completed") == 2,
                   timeout=10, what="the duplicate to run")
    assert len(tables.attempts("again")) == 2
    # The second run found the email recorded (the ledger guards the step, not the dispatch).
    assert [m.attempt for m in smtp_sink.messages() if m.job == "again"] == [1]
