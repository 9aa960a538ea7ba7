"""Graceful shutdown: SIGTERM mid-job, with a grace period longer and shorter than the job.

Guards against deploys and scale-downs losing work: a worker that exits on SIGTERM with a job
in hand, without finishing it or giving it back, loses that job (or leaves it leased until
someone notices). The first SIGTERM is warm (finish, or give back within the grace period),
the second is cold (kill the job now, give it back).
"""

from __future__ import annotations

import dataclasses
import signal

import pytest

from harness.contract import db_write, job, sleep
from harness.scenario import assert_valid


@pytest.mark.parametrize("grace", ["longer", "shorter"], ids=["grace-longer-than-job",
                                                               "grace-shorter-than-job"])
def test_sigterm_mid_job(chaos, grace):
    # A job of 1 s; the grace period is 2.5 s or 0.3 s. Timeout and lease leave it room to run.
    chaos.policy = dataclasses.replace(chaos.policy, job_timeout=3.0, lease=4.0,
                                       shutdown_grace=2.5 if grace == "longer" else 0.3)
    chaos.start_workers(2)
    chaos.dispatch(*[job(f"deploy-{i}", db_write(), sleep(1.0), db_write()) for i in range(4)])
    chaos.wait_for_effects(1)
    busy = chaos.busy_worker()
    chaos.signal_worker(busy, signal.SIGTERM)
    chaos.wait_worker_exit(busy)
    chaos.restart_dead()
    chaos.drain()
    assert_valid(chaos.finish(), chaos.render())


def test_second_sigterm_is_cold(chaos):
    chaos.policy = dataclasses.replace(chaos.policy, job_timeout=3.0, lease=4.0,
                                       shutdown_grace=2.5)
    chaos.start_workers(2)
    chaos.dispatch(*[job(f"cold-{i}", db_write(), sleep(1.5), db_write()) for i in range(4)])
    chaos.wait_for_effects(1)
    busy = chaos.busy_worker()
    chaos.signal_worker(busy, signal.SIGTERM)
    chaos.signal_worker(busy, signal.SIGTERM)
    chaos.wait_worker_exit(busy)
    chaos.restart_dead()
    chaos.drain()
    assert_valid(chaos.finish(), chaos.render())
