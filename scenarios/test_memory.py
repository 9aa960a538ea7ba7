"""Memory: jobs that allocate past the memory limit are killed for real, and it is recorded.

Guards against the OOM killer's silent kill: the kernel SIGKILLs the process, no exception is
raised, no ``failed()`` hook runs, and the job is gone without a trace (the same as PHP dying at
``memory_limit``). The limit is enforced for real: by the cgroup the harness puts each worker
process in (as a container limit would, whatever the worker does), and by the worker's own
limit if it has one.
"""

from __future__ import annotations

import pytest

from harness.contract import alloc, db_write, job
from harness.history import OUTCOME
from harness.nemesis import plan


# Applicable when the worker limits each job's memory itself, or the harness can impose a limit.
@pytest.mark.jobchaos_needs("memory_limit")
def test_jobs_past_the_memory_limit_end_recorded(chaos, jobchaos_profile):
    p = jobchaos_profile
    limit = chaos.policy.memory_limit_mb
    jobs = [job("hog", alloc(limit * 2)),
            *[job(f"modest-{i}", alloc(limit // 4), db_write()) for i in range(p.jobs)]]
    judgement = chaos.check(plan(p.workers, jobs))
    # Recorded and valid, yet vacuous if no limit was enforced: the hog must not complete.
    hog = [op.value for op in judgement.history.of_job("hog") if op.f == OUTCOME]
    assert hog and all(o["status"] != "completed" for o in hog), (
        f"the hog allocated twice the {limit} MiB limit and completed: no memory limit was "
        f"enforced ({hog}). A worker that limits no memory itself declares memory_limit = "
        "false in its worker profile")
