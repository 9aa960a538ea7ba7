"""Graceful shutdown: SIGTERM mid-job, with a grace period longer and shorter than the job.

Guards against deploys and scale-downs losing work: a worker that exits on SIGTERM with a job
in hand, without finishing it or giving it back, loses that job (or leaves it leased until
someone notices). The first SIGTERM is warm (finish, or give back within the grace period),
the second is cold (kill the job now, give it back).
"""

from __future__ import annotations

import pytest

from harness.contract import db_write, job, sleep
from harness.nemesis import after, plan, signal


@pytest.mark.parametrize("grace", ["longer", "shorter"], ids=["grace-longer-than-job",
                                                               "grace-shorter-than-job"])
def test_sigterm_mid_job(chaos, grace):
    # A job of 1 s; the grace period is 2.5 s or 0.3 s. Timeout and lease leave it room to run.
    chaos.tune(job_timeout=3.0, lease=4.0, shutdown_grace=2.5 if grace == "longer" else 0.3)
    jobs = [job(f"deploy-{i}", db_write(), sleep(1.0), db_write()) for i in range(4)]
    chaos.check(plan(2, jobs, signal("busy", after(effects=1))))


def test_second_sigterm_is_cold(chaos):
    chaos.tune(job_timeout=3.0, lease=4.0, shutdown_grace=2.5)
    jobs = [job(f"cold-{i}", db_write(), sleep(1.5), db_write()) for i in range(4)]
    chaos.check(plan(2, jobs, signal("busy", after(effects=1), count=2)))
