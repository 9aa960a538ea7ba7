"""Scenarios the tinyq test worker is judged on, run by
tests/integration/test_thirdparty_worker.py in a session of its own with tinyq's options:

    pytest tests/workers/thirdparty/judged.py \\
        --jobchaos-worker-cmd="python -m tests.workers.thirdparty.worker" \\
        --jobchaos-probe-cmd="python -m tests.workers.thirdparty.probe" \\
        --jobchaos-dispatcher=tests.workers.thirdparty.dispatcher:enqueue \\
        --jobchaos-worker-profile=tests/workers/thirdparty/profile.toml

(with the repository root on PYTHONPATH). Each asserts what a faithful verdict on this worker
is; none of them is a test of tinyq itself.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from harness.contract import alloc, db_write, fail, job, sleep
from harness.nemesis import after, dispatch, kill, link_fault, plan
from harness.run import ChaosRun
from harness.run.judge import Judgement


@pytest.fixture(autouse=True)
def _tinyq_only(jobchaos_config) -> None:
    if "tests.workers.thirdparty.worker" not in " ".join(jobchaos_config.worker_cmd or ()):
        pytest.skip("judged.py judges the tinyq worker: run it with the options in its "
                    "docstring (tests/integration/test_thirdparty_worker.py does)")


def rows(chaos: ChaosRun, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(chaos.world.direct.database_url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def kinds(judgement: Judgement) -> set[str]:
    return {a.kind for a in judgement.result.anomalies}


def test_the_kill_lands_and_the_redelivery_reads_as_one_more_attempt(chaos):
    """SIGKILL tinyq while its work horse (in a process group of its own) sleeps before the
    effect: the horse dies with it, so that attempt's effect never happens; the restarted
    worker redelivers the job with the same attempt number, which the harness takes for one
    more attempt: no ``regressed``, ``hammering`` or ``overlapping``."""
    t = chaos.policy.job_timeout
    jobs = [job("k-1", sleep(0.8 * t), db_write()), job("k-2", db_write())]
    judgement = chaos.play(plan(1, jobs, kill(0, after(attempts=1, delay=0.1 * t))))
    assert not kinds(judgement) & {"regressed", "hammering", "overlapping"}, judgement.text
    [struck] = [s for s in judgement.history.fault_spans() if s.kind == "kill"]
    runs = rows(chaos, "SELECT id, attempt, extract(epoch FROM started_at) FROM chaos_attempts "
                       "WHERE job_id = 'k-1' ORDER BY id")
    before = [r for r in runs if float(r[2]) < struck.start]
    assert len(before) == 1 and len(runs) >= 2, (struck, runs)
    assert {number for _, number, _ in runs} == {1}, "tinyq redelivers without counting"
    killed = before[0][0]
    assert rows(chaos, "SELECT id FROM chaos_effects WHERE attempt_id = %s", killed) == [], (
        "the killed attempt's job process lived on and made its effect")
    assert rows(chaos, "SELECT status FROM chaos_outcomes WHERE attempt_id = %s", killed) == []
    assert ("completed",) in rows(chaos, "SELECT status FROM chaos_outcomes WHERE job_id = "
                                         "'k-1' AND attempt_id <> %s", killed)


def test_an_exit_on_a_redis_fault_is_restarted_and_judged(chaos):
    """tinyq's main process exits (code 1) when its Redis link goes down: the harness records
    the exit, restarts it as a supervisor would, and judges the run, with the exit as
    evidence; work dispatched after the heal is done by the restarted process."""
    before = [job(f"r-{i}", db_write(), sleep(0.1)) for i in range(3)]
    later = [job(f"r-after-{i}", db_write()) for i in range(3)]
    window = 0.5
    judgement = chaos.play(plan(1, before + later,
                                link_fault("down", "redis", after(attempts=1), seconds=window),
                                *[dispatch(j.id, after(at=window * 3)) for j in later]))
    assert "exited" in kinds(judgement), judgement.text
    done = {job_id for (job_id,) in rows(chaos, "SELECT job_id FROM chaos_outcomes WHERE "
                                                "status = 'completed'")}
    assert {j.id for j in later} <= done, judgement.text


def test_one_try_is_judged_as_declared(chaos):
    """The profile says one try: a job that fails once is dead after one attempt, and that is
    what the worker promised (no ``unaccounted_failure``: "dead after 1 of 3 tries")."""
    assert chaos.policy.max_tries == 1, "the profile's policy did not reach the run"
    jobs = [*[job(f"poison-{i}", fail()) for i in range(2)],
            *[job(f"flaky-{i}", fail(times=1), db_write()) for i in range(2)],
            *[job(f"fine-{i}", db_write()) for i in range(2)]]
    judgement = chaos.play(plan(2, jobs))
    assert judgement.valid, judgement.text
    ends = rows(chaos, "SELECT job_id, attempt, status, reason FROM chaos_outcomes ORDER BY id")
    assert sorted(ends) == sorted(
        [(j.id, 1, "dead", "exception") for j in jobs[:4]] +
        [(j.id, 1, "completed", None) for j in jobs[4:]])


@pytest.mark.jobchaos_needs("memory_limit")
def test_a_job_past_the_memory_limit_is_oom_killed_through_the_harness(chaos):
    """tinyq has no memory limit of its own: only the harness's cgroup can stop the hog. The
    kernel kills its work horse, and tinyq records the job dead (``killed`` by signal 9)."""
    limit = chaos.policy.memory_limit_mb
    jobs = [job("hog", alloc(limit * 2, hold=0.2)), job("modest", alloc(limit // 4), db_write())]
    judgement = chaos.play(plan(1, jobs))
    assert judgement.valid, judgement.text
    assert rows(chaos, "SELECT job_id, status, reason, detail FROM chaos_outcomes ORDER BY "
                       "job_id") == [("hog", "dead", "killed", "horse killed by signal 9"),
                                     ("modest", "completed", None, None)]
