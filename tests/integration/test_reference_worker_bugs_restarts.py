"""The server-restart scenarios (scenarios/test_server_restarts.py) fail for the right reason on
a worker with the bug each guards against: their plans, run on the reference worker with a bug
switch on.

- ``no_lease_restore``: Redis restarts empty; the jobs that were running are abandoned instead
  of handed back, so they are lost too (beyond the jobs only Redis held).
- ``no_dedupe``: an append-only Redis remembers the finished jobs, but a worker without dedupe
  runs the ones the producer re-sent after the restart again.
- ``effects_not_idempotent``: PostgreSQL restarts under running attempts; they fail or time
  out, and their retries write the first effect again.
"""

from __future__ import annotations

import pytest

from harness.checkers import Validity
from harness.run import ChaosRun
from harness.run.judge import Judgement
from harness.run.world import REFERENCE_PROBE, WorkerSpec
from harness.services.workers import REFERENCE_WORKER
from reference_worker.testing import bugs_env
from scenarios.test_server_restarts import (
    only_in_redis,
    postgres_restart_plan,
    redis_restart_plan,
    the_restart,
)


def with_bug(chaos: ChaosRun, bug: str) -> None:
    """Run the reference worker with ``bug`` on (whatever worker the session was given)."""
    chaos.world.worker = WorkerSpec(argv=REFERENCE_WORKER, probe_argv=REFERENCE_PROBE,
                                    env=bugs_env(bug))


def failure_kinds(judgement: Judgement) -> set[str]:
    return {a.kind for a in judgement.result.anomalies if a.severity == "failure"}


@pytest.mark.jobchaos_redis(persistence="none")
def test_no_lease_restore_loses_the_jobs_running_at_an_empty_restart(chaos, jobchaos_profile):
    with_bug(chaos, "no_lease_restore")
    judgement = chaos.play(redis_restart_plan(chaos, jobchaos_profile, crash=False))
    h, result = judgement.history, judgement.result
    restart = the_restart(h, "redis")
    running = {str(a["job"]) for a in restart.inflight}
    lost = {str(a.job) for a in result.of_kind("lost")}
    assert result.validity is Validity.INVALID and failure_kinds(judgement) == {"lost"}, (
        judgement.text)
    assert running and running <= lost, f"running at the restart {running}, lost {lost}"
    assert lost <= only_in_redis(h, restart) | running, judgement.text


@pytest.mark.jobchaos_redis(persistence="always")
def test_no_dedupe_runs_finished_jobs_again_after_an_append_only_restart(chaos,
                                                                       jobchaos_profile):
    with_bug(chaos, "no_dedupe")
    judgement = chaos.play(redis_restart_plan(chaos, jobchaos_profile, crash=True))
    assert judgement.result.validity is Validity.INVALID, judgement.text
    assert failure_kinds(judgement) == {"duplicated"}, judgement.text
    again = {str(a.job) for a in judgement.result.of_kind("duplicated")}
    assert again and all(j.startswith("before-") for j in again), again  # the re-sent ones


def test_effects_not_idempotent_repeats_the_effect_after_a_postgres_restart(chaos,
                                                                           jobchaos_profile):
    with_bug(chaos, "effects_not_idempotent")
    judgement = chaos.play(postgres_restart_plan(chaos, jobchaos_profile))
    assert judgement.result.validity is Validity.INVALID, judgement.text
    assert failure_kinds(judgement) == {"duplicated"}, judgement.text
    h = judgement.history
    retried = {str(h.jobs[i]) for i in h.indices("attempt")
               if h.values[i].get("status") == "retrying"}
    assert retried, "no attempt failed across the restart"
    assert {str(a.job) for a in judgement.result.of_kind("duplicated")} <= retried
