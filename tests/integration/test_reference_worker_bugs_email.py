"""The ``email_every_retry`` bug switch, caught by the email-retries scenario's plan
(scenarios/test_email_retries.py): every retry of a job that failed after its email step sends
the email again, with no fault near the send, and the verdict says ``duplicated``; the correct
worker, on the same plan, sends each email once although every job is retried."""

from __future__ import annotations

from dataclasses import replace

import pytest

from harness.checkers import Validity
from harness.contract import Job, db_write, email, fail, job
from harness.nemesis import plan
from harness.run.builder import RunBuilder
from harness.run.judge import Judgement
from harness.services.workers import REFERENCE_WORKER
from reference_worker.bugs import ENV_BUGS

N_JOBS = 4


def notify_jobs() -> list[Job]:
    """As in the scenario: an email, then a step that fails on the first one or two tries."""
    return [job(f"notify-{i}", db_write(), email(), fail(times=1 + i % 2))
            for i in range(N_JOBS)]


def play(runs: RunBuilder, bugs: str) -> Judgement:
    if tuple(runs.worker.argv) != tuple(REFERENCE_WORKER):
        pytest.skip("bug switches belong to the reference worker")
    runs.worker = replace(runs.worker, env={**runs.worker.env, ENV_BUGS: bugs})
    with runs.run() as run:
        return run.play(plan(2, notify_jobs()))


def test_email_every_retry_is_caught_as_duplicated(jobchaos_runs):
    result = play(jobchaos_runs, "email_every_retry").result
    assert result.validity is Validity.INVALID
    dupes = [a for a in result.anomalies if a.kind == "duplicated"]
    repeats = sum(1 + i % 2 for i in range(N_JOBS))  # one per retry
    assert result.counts["duplicated"] == repeats, result.counts
    assert {a.severity for a in dupes} == {"failure"}
    assert all("after a determinate send" in a.detail for a in dupes), dupes


def test_the_correct_worker_sends_each_email_once_across_retries(jobchaos_runs):
    judgement = play(jobchaos_runs, "")
    result = judgement.result
    assert result.validity is Validity.VALID, judgement.text
    assert result.counts["duplicated"] == 0
    emails = [op for op in judgement.history.ops("effect") if op.value["kind"] == "email"]
    attempts = list(judgement.history.ops("attempt"))
    assert len(emails) == N_JOBS and len(attempts) > N_JOBS  # retried, yet sent once each
    assert {op.value.get("attempt") for op in emails} == {1}  # tagged by the first attempt
