"""Memory: jobs that allocate past the memory limit are killed for real, and it is recorded.

Guards against the OOM killer's silent kill: the kernel SIGKILLs the process, no exception is
raised, no ``failed()`` hook runs, and the job is gone without a trace (the same as PHP dying at
``memory_limit``). The limit is enforced for real: by the cgroup the harness puts each worker
process in (as a container limit would, whatever the worker does), and by the worker's own
limit if it has one.
"""

from __future__ import annotations

from harness.contract import alloc, db_write, job
from harness.history import OUTCOME
from harness.nemesis import plan


def test_jobs_past_the_memory_limit_end_recorded(chaos, jobchaos_profile):
    p = jobchaos_profile
    limit = chaos.policy.memory_limit_mb
    jobs = [job("hog", alloc(limit * 2)),
            *[job(f"modest-{i}", alloc(limit // 4), db_write()) for i in range(p.jobs)]]
    h = chaos.check(plan(p.workers, jobs)).history
    completed = [op.index for op in h.ops(OUTCOME) if op.value.get("job") == "hog"
                 and op.value.get("status") == "completed"]
    assert not completed, (f"the hog, at twice the {limit} MB limit, completed (ops "
                           f"{completed}): no memory limit held it, so nothing was tested")
