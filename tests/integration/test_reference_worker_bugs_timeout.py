"""The ``timeout_not_enforced`` bug switch, caught by the timeout scenario's plan
(scenarios/test_timeout.py): jobs that outlive the timeout run to their end and the verdict
says ``overran``; the correct worker, on the same plan, kills them at the timeout and every
attempt it ran stays within the bound, with room to spare (no false alarm)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from harness.checkers import Validity
from harness.contract import cpu, db_write, job, sleep
from harness.history import ATTEMPT
from harness.nemesis import plan
from harness.run.builder import RunBuilder
from harness.run.judge import Judgement
from harness.services.workers import REFERENCE_WORKER
from reference_worker.bugs import ENV_BUGS

TOO_LONG = ("sleeps-too-long", "spins-too-long")


def play(runs: RunBuilder, bugs: str) -> Judgement:
    if tuple(runs.worker.argv) != tuple(REFERENCE_WORKER):
        pytest.skip("bug switches belong to the reference worker")
    runs.worker = replace(runs.worker, env={**runs.worker.env, ENV_BUGS: bugs})
    with runs.run() as run:
        t = run.policy.job_timeout
        too_long = run.policy.for_checkers().timeout_bound_s + t  # as in the scenario
        jobs = [job(TOO_LONG[0], db_write(), sleep(too_long)), job(TOO_LONG[1], cpu(too_long)),
                *[job(f"in-time-{i}", db_write(), sleep(t * 0.1)) for i in range(4)]]
        return run.play(plan(2, jobs))


def test_timeout_not_enforced_is_caught_as_overran(jobchaos_runs):
    judgement = play(jobchaos_runs, "timeout_not_enforced")
    result = judgement.result
    assert result.validity is Validity.INVALID, judgement.text
    assert {a.kind for a in result.anomalies if a.severity == "failure"} == {"overran"}
    assert sorted(str(a.job) for a in result.of_kind("overran")) == sorted(TOO_LONG)


def test_the_correct_worker_kills_at_the_timeout_well_within_the_bound(jobchaos_runs):
    judgement = play(jobchaos_runs, "")
    result = judgement.result
    assert result.validity is Validity.VALID, judgement.text
    policy = jobchaos_runs.runs[-1].policy.for_checkers()
    took = {op.value["job"]: op.value["stopped"] - op.value["at"]
            for op in judgement.history.ops(ATTEMPT) if op.value["job"] in TOO_LONG}
    assert set(took) == set(TOO_LONG) and result.counts["durations_judged"] >= 6
    # Killed at the timeout: past it, yet by less than half the slack the check allows.
    for name, seconds in took.items():
        assert policy.job_timeout <= seconds < policy.job_timeout + policy.timeout_slack / 2, (
            name, seconds)
