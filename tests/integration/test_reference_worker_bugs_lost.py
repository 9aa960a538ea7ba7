"""Bug switches that lose jobs or hide failures: each wrong behaviour really happens.

For every switch the scenario is the one its mechanism test runs against the correct worker;
here the worker is told to misbehave, and the test shows the anomaly a checker must catch:
a job that is nowhere, stuck forever, or "completed" without its effects.
"""

from __future__ import annotations

import dataclasses
import time

from harness.contract import alloc, db_write, email, fail, job, sleep
from harness.services.base import free_port
from harness.services.pool import WorkerPool
from reference_worker.testing import Tables, bugs_env, policy, run_probe, send, wait_until, where


def _kill_holder(pool: WorkerPool, tables: Tables, job_id: str) -> None:
    row = wait_until(lambda: tables.attempts(job_id), timeout=10, what=f"{job_id} to start")[0]
    pool[int(row.worker.rsplit("-", 1)[1]) - 1].kill()


def test_ack_early_loses_the_job_of_a_killed_worker(chaos_connections, jobchaos_artifacts,
                                                    tables):
    p = policy(job_timeout=3.0, lease=1.0)
    with WorkerPool(chaos_connections, p, size=2, logdir=jobchaos_artifacts,
                    extra_env=bugs_env("ack_early")) as pool:
        send(chaos_connections, job("popped", db_write(), sleep(2.0)))
        wait_until(lambda: tables.effects("popped"), timeout=10, what="the job's effect")
        _kill_holder(pool, tables, "popped")
        time.sleep(3 * p.lease)  # several lease periods: a reaper would have found it by now
        assert where(run_probe(chaos_connections), "popped") == [], "the job is nowhere"
    assert tables.outcomes("popped") == [], "no outcome: the job is lost"


def test_no_reaper_leaves_a_dead_workers_job_leased_forever(chaos_connections,
                                                            jobchaos_artifacts, tables):
    p = policy(job_timeout=3.0, lease=1.0)
    with WorkerPool(chaos_connections, p, size=2, logdir=jobchaos_artifacts,
                    extra_env=bugs_env("no_reaper")) as pool:
        send(chaos_connections, job("stranded", sleep(2.0)))
        _kill_holder(pool, tables, "stranded")
        time.sleep(3 * p.lease)
        state = run_probe(chaos_connections)
    [lease] = [x for x in state.leased if x.job_id == "stranded"]
    assert lease.expires_in < -p.lease, "the lease expired long ago and nobody reclaimed it"
    assert tables.outcomes("stranded") == []


def test_timeout_skips_failed_hook_makes_the_job_vanish(chaos_connections, jobchaos_artifacts,
                                                        tables):
    p = policy(job_timeout=0.5)
    with WorkerPool(chaos_connections, p, size=1, logdir=jobchaos_artifacts,
                    extra_env=bugs_env("timeout_skips_failed_hook")):
        send(chaos_connections, job("slow", sleep(10)))
        wait_until(lambda: tables.attempts("slow")
                   and where(run_probe(chaos_connections), "slow") == [],
                   timeout=10, what="the timed-out job to leave the system")
    assert tables.outcomes("slow") == [], "killed on timeout, and no failure recorded"
    assert len(tables.attempts("slow")) == 1


def test_memory_kill_unrecorded_makes_the_job_vanish(chaos_connections, jobchaos_artifacts,
                                                     tables):
    p = policy(memory_limit_mb=64, job_timeout=5.0, lease=6.0)
    with WorkerPool(chaos_connections, p, size=1, logdir=jobchaos_artifacts,
                    extra_env=bugs_env("memory_kill_unrecorded")):
        send(chaos_connections, job("hog", alloc(256, hold=2.0)))
        wait_until(lambda: tables.attempts("hog")
                   and where(run_probe(chaos_connections), "hog") == [],
                   timeout=15, what="the memory-killed job to leave the system")
    assert tables.outcomes("hog") == []


def test_status_before_effects_reports_completed_without_the_effect(chaos_connections,
                                                                    jobchaos_artifacts, tables):
    p = policy(backoff_base=0.1, backoff_cap=0.2)
    with WorkerPool(chaos_connections, p, size=1, logdir=jobchaos_artifacts,
                    extra_env=bugs_env("status_before_effects")):
        send(chaos_connections, job("liar", fail(times=1), db_write()))
        tables.wait_terminal(["liar"], timeout=10)
        time.sleep(3 * p.backoff_cap)  # a correct worker would have retried by now
    assert [(o.attempt, o.status) for o in tables.outcomes("liar")] == [(1, "completed")]
    assert tables.effects("liar") == [], "'completed', but its db_write never happened"
    assert len(tables.attempts("liar")) == 1


def test_swallow_smtp_errors_completes_without_sending(chaos_connections, jobchaos_artifacts,
                                                       tables, smtp_sink):
    nowhere = dataclasses.replace(chaos_connections, smtp_port=free_port())
    with WorkerPool(nowhere, policy(), size=1, logdir=jobchaos_artifacts,
                    extra_env=bugs_env("swallow_smtp_errors")) as pool:
        send(nowhere, job("quiet", email(), db_write()))
        tables.wait_terminal(["quiet"], timeout=10)
        assert "email failed" in pool[0].log_path.read_text()
    assert [(o.attempt, o.status) for o in tables.outcomes("quiet")] == [(1, "completed")]
    assert [m for m in smtp_sink.messages() if m.job == "quiet"] == []
