"""Server restarts mid-run: Redis with and without persistence, PostgreSQL.

Guards against the failures of a restarting server under a busy worker pool:

- a Redis failover or crash (an append-only Redis SIGKILLed and started again): a worker that
  loses jobs it was running, or runs again a job that had finished, when the producer re-sends
  a push whose reply the restart cut off;
- a managed-Redis maintenance restart without persistence (a cache-only plan: Redis comes back
  empty): the jobs waiting only in Redis are gone, which the verdict must name, job by job,
  with the restart as the fault active; the jobs a worker was running must survive (the
  heartbeat puts their leases back), and a finished job sent again must not run twice (the
  ledger, not Redis, remembers that it finished);
- a PostgreSQL restart during a deploy: attempts whose writes meet a server that is shutting
  down fail or time out and are retried, and the retry must not repeat the effect the first
  attempt already made; the test's database, and what was written to it, survive.

Each Redis scenario gets a Redis server of its own (``jobchaos_redis`` marker), so the restart
strikes only this test; the PostgreSQL restart strikes the stack's server, which no other test
of this process uses meanwhile (one stack per process, tests run one at a time).
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.checkers import Validity
from harness.contract import db_write, email, job, sleep
from harness.history import History
from harness.history.model import FaultSpan
from harness.nemesis import Plan, after, dispatch, plan, redispatch, restart_server
from harness.run import ChaosRun, Profile
from harness.run.judge import Judgement

ONCE = {"email": "exactly_once"}  # finished jobs are sent again here but must run once


def redis_restart_plan(chaos: ChaosRun, p: Profile, *, crash: bool) -> Plan:
    """Jobs that finished, jobs running and jobs waiting when Redis restarts; afterwards the
    producer re-sends the finished ones (the replies of pushes it retried were lost).

    ``before-*`` finish first; then ``slow-*`` (one per worker, each busy for a full lease
    past the restart, so its heartbeat meets the restarted Redis) and ``queued-*`` (waiting
    behind them) are dispatched; Redis restarts once every worker runs a slow job."""
    lease = chaos.policy.lease
    delay, down = lease / 10, lease * 0.15
    slow_s = delay + down + lease * 0.75
    chaos.tune(guarantees=ONCE, job_timeout=max(chaos.policy.job_timeout, slow_s * 1.5))
    before = [job(f"before-{i}", db_write(), email()) for i in range(p.workers)]
    slow = [job(f"slow-{i}", db_write(), sleep(slow_s), email()) for i in range(p.workers)]
    queued = [job(f"queued-{i}", db_write(), email())
              for i in range(max(2, p.jobs - len(before) - len(slow)))]
    return plan(p.workers, before + slow + queued,
                *[dispatch(j.id, after(finished=len(before))) for j in slow + queued],
                restart_server("redis", after(attempts=len(before) + len(slow), delay=delay),
                               down=down, crash=crash),
                # once Redis is back (the restart heals within the delay, before these fire)
                *[redispatch(j.id, after(finished=len(before), delay=down + lease / 4))
                  for j in before])


def postgres_restart_plan(chaos: ChaosRun, p: Profile) -> Plan:
    """Jobs with an effect before and after a pause (one per worker, first) and quick ones
    behind them; PostgreSQL restarts just after the first effect and stays down longer than a
    job may run, so the attempts in flight fail (their next write meets a server shutting
    down) or time out, and are retried."""
    t = chaos.policy.job_timeout
    paused = [job(f"pg-paused-{i}", db_write(), sleep(t / 2), db_write(), email())
              for i in range(p.workers)]
    quick = [job(f"pg-{i}", db_write(), db_write(), email())
             for i in range(max(2, p.jobs - p.workers))]
    return plan(p.workers, paused + quick,
                restart_server("postgres", after(effects=1, delay=t / 10), down=t * 1.5))


# -- reading the history ----------------------------------------------------------------------


def the_restart(history: History, server: str) -> FaultSpan:
    [span] = [s for s in history.fault_spans() if s.kind == "restart_server"]
    assert span.target == server and span.heal is not None, span
    return span


def only_in_redis(history: History, restart: FaultSpan) -> set[str]:
    """Jobs that, when the restart struck, were only in Redis: acknowledged before it, not
    finished before it, and not being run by a worker (the attempts it recorded in flight)."""
    assert isinstance(restart.params, dict) and restart.params.get("inflight") is not None, (
        "the restart recorded no attempts in flight: cannot tell which jobs were only in Redis")
    acked = {str(history.jobs[i]) for i in history.indices("dispatch")
             if i < restart.inject and history.types[i] == "ok"}
    finished = {str(history.jobs[i]) for i in history.indices("outcome")
                if history.event_time(i) < restart.start}
    running = {str(a["job"]) for a in restart.inflight}
    return acked - finished - running


def completions(history: History, job_id: str) -> list[dict[str, Any]]:
    return [history.values[i] for i in history.indices("outcome")
            if history.jobs[i] == job_id and history.values[i]["status"] == "completed"]


def assert_lost_exactly_what_only_redis_held(judgement: Judgement) -> None:
    """Invalid with only ``lost`` anomalies, one per job that only Redis held at the restart,
    each with the restart as the fault active; every other job completed once."""
    h, result = judgement.history, judgement.result
    restart = the_restart(h, "redis")
    expected = only_in_redis(h, restart)
    assert expected, "nothing was waiting in Redis at the restart: the scenario proved nothing"
    assert restart.inflight, "no attempt was running at the restart: no survivor to check"
    failures = {a.kind for a in result.anomalies if a.severity == "failure"}
    assert result.validity is Validity.INVALID and failures == {"lost"}, judgement.text
    # One lost anomaly per job (samples are capped; the count is not), none outside the
    # expected set, and every other job completed (below): lost is exactly the expected set.
    lost = {str(a.job) for a in result.of_kind("lost")}
    assert lost <= expected and result.counts["lost"] == len(expected), judgement.text
    for a in result.of_kind("lost"):
        assert h.faults_active(a.ops, job=a.job) == [restart], f"{a.job}: not the restart"
    dispatched = {str(h.jobs[i]) for i in h.indices("dispatch")}
    for job_id in dispatched - expected:
        assert len(completions(h, job_id)) == 1, f"{job_id}: {completions(h, job_id)}"


# -- the scenarios ----------------------------------------------------------------------------


@pytest.mark.jobchaos_needs("dedupe")  # finished jobs are sent again
@pytest.mark.jobchaos_redis(persistence="always")
def test_redis_crash_with_append_only_file_loses_nothing(chaos, jobchaos_profile):
    judgement = chaos.check(redis_restart_plan(chaos, jobchaos_profile, crash=True))
    restart = the_restart(judgement.history, "redis")
    assert restart.params["crash"] is True
    # Valid, with jobs waiting only in Redis when it was killed: the append-only file kept them.
    assert only_in_redis(judgement.history, restart), "nothing was waiting in Redis"


@pytest.mark.jobchaos_needs("dedupe")  # finished jobs are sent again
@pytest.mark.jobchaos_redis(persistence="none")
def test_redis_restart_without_persistence_loses_exactly_the_waiting_jobs(chaos,
                                                                          jobchaos_profile):
    judgement = chaos.play(redis_restart_plan(chaos, jobchaos_profile, crash=False))
    assert_lost_exactly_what_only_redis_held(judgement)


@pytest.mark.jobchaos_needs("retries")  # the attempts the restart failed are retried
def test_postgres_restart_mid_run(chaos, jobchaos_profile):
    judgement = chaos.check(postgres_restart_plan(chaos, jobchaos_profile))
    h = judgement.history
    restart = the_restart(h, "postgres")
    # The test's database survived the restart: effects written before it were read after.
    before = [i for i in h.indices("effect") if h.values[i]["kind"] == "db_write"
              and h.event_time(i) < restart.start]
    assert before, "no effect written before the restart was found after it"
    # Attempts running at the restart failed and were retried: the retry had its chance to
    # write the first effect again (and the checkers found it did not).
    retried = {str(h.jobs[i]) for i in h.indices("attempt") if h.values[i].get("status") == "retrying"}
    assert retried & {str(a["job"]) for a in restart.inflight}, "no attempt was retried"
