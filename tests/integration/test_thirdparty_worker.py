"""A worker the harness did not write: tinyq (tests/workers/thirdparty/), a small library that
behaves as popular ones do, tested through its kit shim, dispatch plugin, probe and profile.

First, that the test worker really behaves as declared (its job process leaves the process
group, it redelivers without counting, it takes a second to start, its main process exits on
a Redis error, one try, a warm shutdown). Then, that the harness judges it faithfully: one
pytest session run the way a user runs their own worker (``--jobchaos-worker-cmd`` and
friends) over tests/workers/thirdparty/judged.py and two of the scenarios.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis

from harness.contract import (
    Connections,
    Policy,
    ProbeState,
    db_write,
    fail,
    job,
    sleep,
    worker_env,
)
from harness.kit import Kit
from harness.services.pool import WorkerPool
from reference_worker.testing import Tables, wait_until
from tests.workers.thirdparty import tinyq
from tests.workers.thirdparty.probe import read
from tests.workers.thirdparty.worker import connect

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "tests" / "workers" / "thirdparty"
WORKER = (sys.executable, "-m", "tests.workers.thirdparty.worker")
PROBE = (sys.executable, "-m", "tests.workers.thirdparty.probe")
ENV = {"PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
POLICY = Policy(job_timeout=2.0, max_tries=1, shutdown_grace=3.0)


@pytest.fixture
def tinyq_pool(chaos_connections: Connections, database_url: str, jobchaos_artifacts: Path
               ) -> Iterator[WorkerPool]:
    with WorkerPool(chaos_connections, POLICY, size=1, argv=WORKER, logdir=jobchaos_artifacts,
                    extra_env=ENV, report_database_url=database_url) as pool:
        yield pool


def enqueue(conn: Connections, *jobs) -> None:
    client = redis.Redis.from_url(conn.redis_url)
    try:
        for j in jobs:
            tinyq.Queue(conn.queue, client).enqueue(j.id, j.to_json())
    finally:
        client.close()


def probe(conn: Connections, report_url: str) -> ProbeState:
    """The tinyq probe's answer (its ``read``, without a process in between)."""
    return read(Kit.from_env(worker_env(conn, POLICY, "probe", report_database_url=report_url)))


def attempts(tables: Tables, job_id: str) -> list[tuple[int, int, str]]:
    return tables.conn.execute("SELECT id, attempt, worker FROM chaos_attempts WHERE job_id = %s "
                               "ORDER BY id", (job_id,)).fetchall()


# -- the test worker behaves as declared ------------------------------------------------------

def test_it_consumes_a_second_after_it_starts_and_then_says_ready(tinyq_pool, chaos_connections,
                                                                  tables):
    enqueue(chaos_connections, job("first", db_write()))
    tables.wait_terminal(["first"], timeout=15)
    [(worker, pid, at)] = tables.conn.execute("SELECT worker, pid, extract(epoch FROM at) "
                                              "FROM chaos_ready").fetchall()
    assert (worker, pid) == ("worker-1", tinyq_pool[0].pid)
    assert float(at) - tinyq_pool[0].lives[0].started >= tinyq.STARTUP * 0.9
    [(attempt_id, number, _)] = attempts(tables, "first")
    assert number == 1
    assert tables.conn.execute("SELECT attempt_id, status FROM chaos_outcomes").fetchall() == [
        (attempt_id, "completed")]
    assert tables.conn.execute("SELECT attempt_id FROM chaos_effects").fetchall() == [
        (attempt_id,)]


def test_its_job_process_leaves_the_process_group_and_outlives_a_group_kill(
        tinyq_pool, chaos_connections, tables):
    enqueue(chaos_connections, job("long", sleep(30)))
    wait_until(lambda: attempts(tables, "long"), timeout=15, what="the attempt of 'long'")
    main = psutil.Process(tinyq_pool[0].pid)
    [horse] = wait_until(main.children, timeout=5, what="tinyq's work horse")
    try:
        assert os.getpgid(horse.pid) == horse.pid != os.getpgid(main.pid)
        os.killpg(os.getpgid(main.pid), signal.SIGKILL)  # what a kill of the group reaches
        main.wait(5)
        assert horse.is_running() and horse.status() != psutil.STATUS_ZOMBIE
    finally:
        horse.kill()


def test_it_redelivers_what_its_dead_process_had_started_without_counting(
        tinyq_pool, chaos_connections, tables):
    enqueue(chaos_connections, job("again", sleep(30), db_write()))
    wait_until(lambda: attempts(tables, "again"), timeout=15, what="the first attempt")
    main = psutil.Process(tinyq_pool[0].pid)
    for p in [*main.children(recursive=True), main]:
        p.kill()
    tinyq_pool[0].restart()
    two = wait_until(lambda: (a := attempts(tables, "again")) and len(a) == 2 and a,
                     timeout=15, what="the redelivered attempt")
    assert [(number, worker) for _, number, worker in two] == [(1, "worker-1")] * 2
    assert two[0][0] != two[1][0]
    [(_, worker)] = [(m.job_id, w) for m, w in tinyq.Queue(
        chaos_connections.queue, connect(chaos_connections.redis_url)).started()]
    assert worker == "worker-1"


def test_its_main_process_exits_with_code_1_on_a_redis_error(
        chaos_connections, database_url, proxied_redis_url, faults, jobchaos_artifacts, tables):
    through = Connections(redis_url=proxied_redis_url, database_url=chaos_connections.database_url,
                          smtp_host=chaos_connections.smtp_host,
                          smtp_port=chaos_connections.smtp_port, queue=chaos_connections.queue)
    with WorkerPool(through, POLICY, size=1, argv=WORKER, logdir=jobchaos_artifacts,
                    extra_env=ENV, report_database_url=database_url) as pool:
        wait_until(lambda: tables.conn.execute("SELECT 1 FROM chaos_ready").fetchall(),
                   timeout=15, what="the ready row")
        faults.redis.down()
        assert pool[0].wait(10) == 1
    assert "Redis error, exiting: ConnectionError" in pool[0].log_path.read_text()


def test_one_try_then_failed_and_the_probe_sees_its_structures(chaos_connections, database_url,
                                                              jobchaos_artifacts, tables):
    enqueue(chaos_connections, job("poison", fail()), job("slow", sleep(30)),
            job("waiting", db_write()))
    before = probe(chaos_connections, database_url)
    assert before.queued == ("poison", "slow", "waiting") and before.leased == ()
    with WorkerPool(chaos_connections, POLICY, size=1, argv=WORKER, logdir=jobchaos_artifacts,
                    extra_env=ENV, report_database_url=database_url):
        wait_until(lambda: attempts(tables, "slow"), timeout=15, what="the attempt of 'slow'")
        during = probe(chaos_connections, database_url)
        assert during.queued == ("waiting",)
        assert [(x.job_id, x.worker) for x in during.leased] == [("slow", "worker-1")]
        assert [(d.job_id, d.reason) for d in during.dead] == [("poison", "exception")]
        assert [(o.attempt, o.status, o.reason) for o in tables.outcomes("poison")] == [
            (1, "dead", "exception")]
        assert len(attempts(tables, "poison")) == 1


def test_sigterm_is_a_warm_shutdown_that_lets_the_job_finish(tinyq_pool, chaos_connections,
                                                             tables):
    enqueue(chaos_connections, job("finish", sleep(1.0), db_write()))
    wait_until(lambda: attempts(tables, "finish"), timeout=15, what="the attempt")
    tinyq_pool[0].signal(signal.SIGTERM)
    tinyq_pool[0].signal(signal.SIGTERM)  # no cold shutdown: the second changes nothing
    assert tinyq_pool[0].wait(POLICY.shutdown_grace + 2) == 0
    assert [(o.status, o.reason) for o in tables.outcomes("finish")] == [("completed", None)]
    assert len(tables.effects("finish")) == 1


# -- the harness judges it faithfully ---------------------------------------------------------

SCENARIOS = ("scenarios/test_locks.py", "scenarios/test_memory.py")


def run_session(where: Path) -> dict[str, tuple[str, str]] | str:
    """One session over judged.py and two scenarios with the tinyq worker, the way a user
    runs their own: test name -> (outcome, message), or why the session did not run."""
    report = where / "junit.xml"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-rA",
         f"--junitxml={report}", f"--jobchaos-artifacts-dir={where / 'artifacts'}",
         f"--jobchaos-worker-cmd={' '.join(WORKER)}", f"--jobchaos-probe-cmd={' '.join(PROBE)}",
         "--jobchaos-dispatcher=tests.workers.thirdparty.dispatcher:enqueue",
         f"--jobchaos-worker-profile={HERE / 'profile.toml'}",
         str(HERE / "judged.py"), *SCENARIOS],
        cwd=ROOT, env={**os.environ, **ENV}, capture_output=True, text=True, timeout=280,
        check=False)
    out = done.stdout + done.stderr
    if not report.exists():
        return f"the session did not run:\n{out[-4000:]}"
    results = {}
    for case in ET.parse(report).iter("testcase"):
        outcome, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            node = case.find(kind)
            if node is not None:
                outcome, message = kind, f"{node.get('message', '')}\n{node.text or ''}"
        results[case.get("name", "")] = (outcome, message)
    return results or f"no test ran:\n{out[-4000:]}"


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    """The session's results, run once even when pytest-xdist spreads this module's tests
    over several processes (the first runs it, the others read its results)."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    with open(shared / "thirdparty-judged.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        saved = shared / "thirdparty-judged.json"
        if not saved.exists():
            where = shared / "thirdparty-judged"
            where.mkdir(exist_ok=True)
            saved.write_text(json.dumps(run_session(where)))
        results = json.loads(saved.read_text())
    if isinstance(results, str):
        pytest.fail(results, pytrace=False)
    return {name: (outcome, message) for name, (outcome, message) in results.items()}


def outcome_of(judged: dict[str, tuple[str, str]], name: str) -> tuple[str, str]:
    assert name in judged, f"{name} did not run; ran: {sorted(judged)}"
    return judged[name]


@pytest.mark.parametrize("name", [
    "test_the_kill_lands_and_the_redelivery_reads_as_one_more_attempt",
    "test_an_exit_on_a_redis_fault_is_restarted_and_judged",
    "test_one_try_is_judged_as_declared",
    "test_a_job_past_the_memory_limit_is_oom_killed_through_the_harness",
    "test_jobs_past_the_memory_limit_end_recorded",
])
def test_the_harness_judges_tinyq_faithfully(judged, name):
    outcome, message = outcome_of(judged, name)
    assert outcome == "passed", message[-6000:]


def test_the_lock_scenario_is_not_applicable_to_a_worker_without_locks(judged):
    outcome, message = outcome_of(judged, "test_lock_of_a_killed_holder_expires")
    assert outcome == "skipped" and "not applicable: locks" in message, message[-3000:]
