"""The worker kit on real servers: the rows it writes (with attempt ids), the steps' semantics,
fork safety, and reports that ride out a broken link."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from typing import Any

import psutil
import psycopg
import pytest

from harness.contract import (
    Connections,
    alloc,
    cpu,
    crash,
    db_write,
    email,
    fail,
    job,
    sleep,
    worker_env,
)
from harness.kit import CRASH_EXIT_CODE, Kit, StepFailed
from reference_worker.testing import FAST, wait_until


def make_kit(conn: Connections, report_url: str, worker: str = "worker-7", **kw: Any) -> Kit:
    return Kit.from_env(worker_env(conn, FAST, worker, report_database_url=report_url), **kw)


@pytest.fixture
def kit(chaos_connections: Connections, database_url: str):
    k = make_kit(chaos_connections, database_url)
    yield k
    k.close()


@pytest.fixture
def db(database_url: str):
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


def rows(db: psycopg.Connection, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return db.execute(sql, params).fetchall()


def test_ready_writes_one_row_naming_the_worker_and_its_pid(kit, db):
    kit.ready()
    assert rows(db, "SELECT worker, pid FROM chaos_ready") == [("worker-7", os.getpid())]


def test_begin_returns_the_rows_id_and_counts_runs_when_the_library_does_not(kit, db):
    counted = [kit.begin(job("counted", db_write())) for _ in range(2)]
    assert [(a.number, a.nth) for a in counted] == [(1, 1), (2, 2)]
    # A library that redelivers without counting says 1 each time; the kit still counts runs.
    redelivered = [kit.begin(job("again", db_write()), attempt=1) for _ in range(3)]
    assert [(a.number, a.nth) for a in redelivered] == [(1, 1), (1, 2), (1, 3)]
    found = rows(db, "SELECT id, job_id, attempt, worker FROM chaos_attempts ORDER BY id")
    assert found == [(a.id, a.job.id, a.number, "worker-7") for a in counted + redelivered]


def test_an_envelope_may_be_a_job_its_dict_or_its_json(kit):
    j = job("env", db_write(), sleep(0))
    for envelope in (j, {"id": "env", "steps": list(j.steps)}, j.to_json(),
                     j.to_json().encode()):
        assert kit.begin(envelope).job.steps == j.steps
    with pytest.raises(ValueError, match="unknown op 'explode'"):
        kit.begin({"id": "bad", "steps": [{"op": "explode"}]})


def test_outcomes_carry_the_attempt_id_and_the_first_one_stands(kit, db):
    first, second = kit.begin(job("o", fail(times=1))), kit.begin(job("o", db_write()))
    assert first.retrying("exception", "boom") is True
    assert first.dead("killed") is False  # the main process, after the job process reported
    assert second.completed() is True
    first.stopped(at=1_700_000_000.5)
    assert first.outcome() == "retrying" and second.outcome() == "completed"
    assert rows(db, "SELECT job_id, attempt, worker, attempt_id, status, reason, detail "
                    "FROM chaos_outcomes ORDER BY id") == [
        ("o", 1, "worker-7", first.id, "retrying", "exception", "boom"),
        ("o", 2, "worker-7", second.id, "completed", None, None)]
    [(stopped,)] = rows(db, "SELECT extract(epoch FROM stopped_at) FROM chaos_attempts "
                            "WHERE id = %s", first.id)
    assert float(stopped) == 1_700_000_000.5
    with pytest.raises(ValueError, match="reason 'oops' is not one of exception, timeout"):
        second.dead("oops")  # type: ignore[arg-type]


def test_plain_effects_repeat_on_every_run(kit, db, smtp_sink):
    runs = [kit.begin(job("p", db_write(), email()), attempt=1) for _ in range(2)]
    for a in runs:
        a.run()
    assert rows(db, "SELECT job_id, step, attempt, worker, attempt_id FROM chaos_effects "
                    "ORDER BY id") == [("p", 0, 1, "worker-7", a.id) for a in runs]
    sent = smtp_sink.wait_for(lambda ms: len([m for m in ms if m.job == "p"]) >= 2, 10)
    # Both say attempt 1; the attempt id tells the two sends apart.
    assert [(m.job, m.step, m.header("X-Chaos-Attempt"), m.attempt_id) for m in sent
            if m.job == "p"] == [("p", "1", "1", a.id) for a in runs]


def test_once_effects_happen_once_per_job_and_step(chaos_connections, database_url, db,
                                                   smtp_sink):
    k = make_kit(chaos_connections, database_url, effects="once")
    try:
        runs = [k.begin(job("x", db_write(), email(), db_write())) for _ in range(3)]
        for a in runs:
            a.run()
    finally:
        k.close()
    assert rows(db, "SELECT step, attempt_id FROM chaos_effects ORDER BY id") == [
        (0, runs[0].id), (2, runs[0].id)]
    smtp_sink.wait_for(lambda ms: any(m.job == "x" for m in ms), 10)
    time.sleep(0.2)  # a second message would have arrived by now: the first one did
    assert [m.step for m in smtp_sink.messages() if m.job == "x"] == ["1"]


def test_fail_and_crash_go_by_the_kits_count_of_runs(kit, db):
    failing = [kit.begin(job("f", fail(times=2), db_write()), attempt=1) for _ in range(3)]
    for a in failing[:2]:
        with pytest.raises(StepFailed, match="fail on attempt"):
            a.run()
    failing[2].run()
    assert rows(db, "SELECT attempt_id FROM chaos_effects") == [(failing[2].id,)]

    codes = []
    for _ in range(2):
        attempt = kit.begin(job("c", crash(times=1), db_write()), attempt=1)
        pid = os.fork()
        if pid == 0:
            attempt.run()
            os._exit(0)
        codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    assert codes == [CRASH_EXIT_CODE, 0]
    assert len(rows(db, "SELECT 1 FROM chaos_effects WHERE job_id = 'c'")) == 1


def test_a_forked_child_gets_connections_of_its_own(kit, db):
    """The kit connected in the parent; a job process forked after reports and writes on new
    connections, and the parent's still work afterwards."""
    kit.ready()
    parent_report = kit._report.get().execute("SELECT pg_backend_pid()").fetchone()
    attempts = [kit.begin(job(f"fork-{i}", db_write())) for i in range(3)]
    attempts[0].run()  # the parent's own (worker) connection is open too
    parent_db = kit._database.get().execute("SELECT pg_backend_pid()").fetchone()
    for a in attempts[1:]:
        pid = os.fork()
        if pid == 0:
            try:
                a.run()
                a.completed()
                ok = kit._report.get().execute("SELECT pg_backend_pid()").fetchone() != (
                    parent_report) and kit._database.get().execute(
                    "SELECT pg_backend_pid()").fetchone() != parent_db
            except BaseException:
                ok = False
            os._exit(0 if ok else 1)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    attempts[0].completed()
    assert kit._report.get().execute("SELECT pg_backend_pid()").fetchone() == parent_report
    assert rows(db, "SELECT attempt_id FROM chaos_outcomes ORDER BY attempt_id") == [
        (a.id,) for a in attempts]
    assert len(rows(db, "SELECT 1 FROM chaos_effects")) == 3


def test_reports_ride_out_a_broken_link_while_the_jobs_effect_does_not(
        chaos_connections, database_url, proxied_database_url, faults, db):
    """Reports retry for a while (a server restart); the ``db_write`` step is the effect under
    test and fails at once on the worker's own link."""
    own = dataclasses.replace(chaos_connections, database_url=proxied_database_url)
    reporting_through_the_link = make_kit(own, proxied_database_url)
    k = make_kit(own, database_url)
    try:
        attempt = k.begin(job("r", db_write()))
        fault = faults.postgres.down()
        with pytest.raises(psycopg.OperationalError):
            attempt.run()
        healer = threading.Timer(0.5, fault.heal)
        healer.start()
        started = time.monotonic()
        reporting_through_the_link.ready()
        assert 0.4 < time.monotonic() - started < 5
        healer.join()
    finally:
        k.close()
        reporting_through_the_link.close()
    assert rows(db, "SELECT worker FROM chaos_ready") == [("worker-7",)]
    assert rows(db, "SELECT 1 FROM chaos_effects") == []


def test_cpu_and_alloc_do_what_they_say(kit):
    """``cpu`` burns CPU time (it never sleeps); ``alloc`` touches every page it allocates, so
    the memory is really resident (what a memory limit sees)."""
    attempt = kit.begin(job("hungry", cpu(0.3), alloc(64, hold=1.0)))
    pid = os.fork()
    if pid == 0:
        attempt.run()
        os._exit(0)
    child = psutil.Process(pid)
    start = child.memory_info().rss  # the forked copy of this process, before it allocates
    rss = [0]

    def resident() -> bool:
        rss.append(child.memory_info().rss)
        return max(rss) - start > 60 * 1024 * 1024

    try:
        wait_until(resident, timeout=10, what="64 MiB more resident in the job process")
        # A sleeping step would use next to no CPU; a busy one uses most of its 0.3 s, less
        # only when other processes share the cores (so the bound leaves room for them).
        assert child.cpu_times().user + child.cpu_times().system >= 0.1
    finally:
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
