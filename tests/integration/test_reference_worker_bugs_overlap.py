"""A lease shorter than the job: the lease scenario's plan, run on a worker with the bug
``lease_shorter_than_timeout``, is caught as overlapping attempts of one job (both attempts'
ops as evidence), judged on when each attempt's process really stopped."""

from __future__ import annotations

import dataclasses

from harness import history as h
from harness.run import ChaosRun
from reference_worker.testing import bugs_env
from scenarios.test_lease import longer_than_the_lease


def test_lease_shorter_than_timeout_runs_two_attempts_of_one_job_at_once(chaos: ChaosRun):
    chaos.world.worker = dataclasses.replace(
        chaos.world.worker, env={**chaos.world.worker.env,
                                 **bugs_env("lease_shorter_than_timeout")})
    judgement = chaos.play(longer_than_the_lease(chaos))
    history = judgement.history
    overlaps = judgement.result.of_kind("overlapping")
    assert overlaps, judgement.text
    for anomaly in overlaps:
        attempts = [history.values[i] for i in anomaly.ops if history.fs[i] == h.ATTEMPT]
        assert len(attempts) == 2, anomaly
        earlier, later = sorted(attempts, key=lambda v: v["at"])
        assert earlier["job"] == later["job"] == anomaly.job
        assert earlier["attempt"] != later["attempt"]
        # The earlier attempt was ended by a reaper's record, yet its process ran on after
        # the later one started: the outcome row alone would have hidden the overlap.
        assert earlier["ended"] <= later["at"] < earlier["stopped"], (earlier, later)
