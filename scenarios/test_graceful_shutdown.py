"""Graceful shutdown: SIGTERM mid-job, with a grace period longer and shorter than the job.

Guards against deploys and scale-downs losing work: a worker that exits on SIGTERM with a job
in hand, without finishing it or giving it back, loses that job (or leaves it leased until
someone notices). The first SIGTERM is warm (finish, or give back within the grace period),
the second is cold (kill the job now, give it back).

Checked, not assumed (the ``workers`` checker): the signalled worker must end its attempt
itself (``dropped_on_shutdown`` when only a reaper's lease expiry ended it, even if the job
completed later elsewhere) and exit within its grace (``slow_shutdown``: a worker that waits
for its job past the grace is SIGKILLed by the orchestrator mid-job in production). The cold
stop is checked to have cut the job short: a worker with only a warm shutdown would finish it
within the grace and pass for nothing.
"""

from __future__ import annotations

import pytest

from harness.contract import db_write, job, sleep
from harness.history import ATTEMPT
from harness.nemesis import after, plan, signal


@pytest.mark.jobchaos_needs("warm_shutdown")
@pytest.mark.parametrize("grace", ["longer", "shorter"], ids=["grace-longer-than-job",
                                                               "grace-shorter-than-job"])
def test_sigterm_mid_job(chaos, grace):
    # A job of 1 s with a grace of 2.5 s; or a job of 2.5 s with a grace of 0.3 s (long enough
    # past the grace that a worker waiting for it exits visibly late). Timeout and lease leave
    # the job room to run.
    if grace == "longer":
        chaos.tune(job_timeout=3.0, lease=4.0, shutdown_grace=2.5)
        seconds = 1.0
    else:
        chaos.tune(job_timeout=4.0, lease=5.0, shutdown_grace=0.3)
        seconds = 2.5
    jobs = [job(f"deploy-{i}", db_write(), sleep(seconds), db_write()) for i in range(4)]
    chaos.check(plan(2, jobs, signal("busy", after(effects=1))))


@pytest.mark.jobchaos_needs("warm_shutdown", "cold_shutdown")
def test_second_sigterm_is_cold(chaos):
    chaos.tune(job_timeout=3.0, lease=4.0, shutdown_grace=2.5)
    jobs = [job(f"cold-{i}", db_write(), sleep(1.5), db_write()) for i in range(4)]
    judgement = chaos.check(plan(2, jobs, signal("busy", after(effects=1), count=2)))
    # A warm shutdown alone would let the job finish within the grace, and pass: the job in
    # flight must have been cut short instead.
    h = judgement.history
    [stop] = [s for s in h.fault_spans() if s.kind == "signal"]
    assert stop.inflight, "the SIGTERMs found no attempt in flight: nothing was cut short"
    struck = {(a["job"], a["attempt"], a["worker"]) for a in stop.inflight}
    ends = [op.value for op in h.ops(ATTEMPT)
            if (op.value["job"], op.value["attempt"], op.value["worker"]) in struck]
    assert ends and all(v.get("status") not in (None, "completed") for v in ends), (
        f"the attempt in flight at the second SIGTERM was not cut short: {ends}. A worker "
        "without a cold shutdown declares cold_shutdown = false in its worker profile")
