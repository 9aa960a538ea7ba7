"""Reference worker: an attempt that is killed is always recorded, with the right reason.

Timeout (also of a job that never yields), memory (the kernel's OOM killer in a cgroup, or the
RSS watchdog), a signal from outside, a hard exit: each ends in an outcome, never in silence.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest

from harness.contract import alloc, cpu, db_write, job, sleep
from harness.services.pool import WorkerPool
from reference_worker.memory import CGROUP_PREFIX, cgroup_available, memory_cgroup_dir
from reference_worker.testing import policy, run_probe, send, wait_until

CGROUP = memory_cgroup_dir()
needs_cgroup = pytest.mark.skipif(not cgroup_available(CGROUP),
                                  reason="needs root and a writable cgroup v1 memory controller")


def _children(pool: WorkerPool, index: int = 0) -> list[psutil.Process]:
    pid = pool[index].pid
    assert pid is not None
    return psutil.Process(pid).children()


def test_timeout_kills_the_job_and_records_the_failure(chaos_connections, jobchaos_artifacts,
                                                       tables):
    p = policy(job_timeout=0.5, max_tries=2, backoff_base=0.1)
    with WorkerPool(chaos_connections, p, size=1, logdir=jobchaos_artifacts) as pool:
        send(chaos_connections, job("sleepy", db_write(), sleep(30)), job("spinner", cpu(30)))
        tables.wait_terminal(["sleepy", "spinner"], timeout=15)
        assert _children(pool) == [], "the timed-out job processes must be gone"
    for job_id in ("sleepy", "spinner"):
        assert [(o.attempt, o.status, o.reason) for o in tables.outcomes(job_id)] == [
            (1, "retrying", "timeout"), (2, "dead", "timeout")]
        assert "0.5 s job timeout" in (tables.outcomes(job_id)[0].detail or "")
    assert len(tables.effects("sleepy")) == 1
    assert {d.job_id: d.reason for d in run_probe(chaos_connections).dead} == {
        "sleepy": "timeout", "spinner": "timeout"}


@needs_cgroup
def test_memory_limit_is_enforced_by_the_kernel_in_a_cgroup(chaos_connections,
                                                            jobchaos_artifacts, tables):
    p = policy(memory_limit_mb=64, max_tries=2, job_timeout=5.0, lease=6.0)
    with WorkerPool(chaos_connections, p, size=1, logdir=jobchaos_artifacts,
                    extra_env={"REFERENCE_WORKER_MEMORY": "cgroup"}) as pool:
        pid = pool[0].pid
        assert CGROUP is not None
        # Inside the cgroup the harness made for the worker process, if it made one.
        harness_made = pool[0].cgroup
        parent = harness_made.path if harness_made and harness_made.version == 1 else CGROUP
        own = parent / f"{CGROUP_PREFIX}worker_1-{pid}"
        wait_until(own.is_dir, timeout=5, what=f"the worker's cgroup {own}")
        assert (own / "memory.limit_in_bytes").read_text().strip() == str(64 * 1024 * 1024)
        send(chaos_connections, job("hog", alloc(256, hold=2.0)), job("small", alloc(16)))
        tables.wait_terminal(["hog", "small"], timeout=20)
        assert int(_oom_kills(own)) >= 2, "the kernel itself must have killed the job"
    assert [(o.attempt, o.status, o.reason) for o in tables.outcomes("hog")] == [
        (1, "retrying", "memory"), (2, "dead", "memory")]
    assert "OOM killer" in (tables.outcomes("hog")[0].detail or "")
    assert tables.terminal("small").status == "completed"
    assert not own.exists(), "the worker removes its cgroup when it stops"


def _oom_kills(cgroup: Path) -> str:
    text = (cgroup / "memory.oom_control").read_text()
    return next(line.split()[1] for line in text.splitlines() if line.startswith("oom_kill "))


def test_memory_limit_is_enforced_by_the_rss_watchdog(chaos_connections, jobchaos_artifacts,
                                                      tables):
    p = policy(memory_limit_mb=64, max_tries=1, job_timeout=5.0, lease=6.0)
    with WorkerPool(chaos_connections, p, size=1, logdir=jobchaos_artifacts,
                    extra_env={"REFERENCE_WORKER_MEMORY": "watchdog"}):
        send(chaos_connections, job("hog", alloc(512, hold=3.0)), job("small", alloc(16)))
        tables.wait_terminal(["hog", "small"], timeout=20)
    [outcome] = tables.outcomes("hog")
    assert (outcome.status, outcome.reason) == ("dead", "memory")
    assert "RSS watchdog" in (outcome.detail or "")
    assert tables.terminal("small").status == "completed"


def test_a_job_killed_by_a_signal_is_recorded_and_retried(chaos_connections,
                                                          jobchaos_artifacts, tables):
    p = policy(job_timeout=5.0, lease=6.0)
    with WorkerPool(chaos_connections, p, size=1, logdir=jobchaos_artifacts) as pool:
        send(chaos_connections, job("victim", db_write(), sleep(1.0)))
        [child] = wait_until(lambda: tables.attempts("victim") and _children(pool), timeout=10,
                             what="the job's child process")
        assert os.getpgid(child.pid) == child.pid, "each attempt runs in its own process group"
        child.send_signal(signal.SIGKILL)
        tables.wait_terminal(["victim"], timeout=15)
    outcomes = tables.outcomes("victim")
    assert [(o.attempt, o.status, o.reason) for o in outcomes] == [
        (1, "retrying", "killed"), (2, "completed", None)]
    assert "SIGKILL" in (outcomes[0].detail or "")
    assert len(tables.effects("victim")) == 1
