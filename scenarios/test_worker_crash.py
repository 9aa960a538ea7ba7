"""Worker crash: SIGKILL workers mid-job, restart them; nothing lost, effects exactly once.

Guards against three real failures: a job popped off the queue and lost when the process dies
(pop-then-process fetch, as in Resque and early RQ), the in-flight jobs of a dead worker left
forever because nothing reclaims them (no reaper), and a side effect written twice because the
retry after a crash between the effect and the acknowledgement repeats it.
"""

from __future__ import annotations

from harness.contract import db_write, email, job, sleep
from harness.nemesis import after, kill, plan


def test_sigkill_between_effect_and_ack(chaos, jobchaos_profile):
    p = jobchaos_profile
    hold = chaos.policy.job_timeout * 0.3  # the window between the effect and the ack
    jobs = [job(f"crash-{i}", db_write(), sleep(hold), email()) for i in range(p.jobs)]
    # The busy worker has written its effect and not yet acknowledged the job.
    strikes = [kill("busy", after(effects=2 * r)) for r in range(1, p.rounds + 1)]
    chaos.check(plan(p.workers, jobs, *strikes))


def test_sigkill_at_random_moments(chaos, jobchaos_profile):
    p = jobchaos_profile
    jobs = [job(f"rand-{i}", sleep(0.05), db_write(), sleep(0.1), db_write())
            for i in range(p.jobs)]
    # Strike anywhere in a job (before, during or after its effects), on a seeded worker.
    strikes = [kill(chaos.rng.randrange(p.workers),
                    after(attempts=r, delay=round(chaos.rng.uniform(0, 0.2), 3)))
               for r in range(1, p.rounds + 1)]
    chaos.check(plan(p.workers, jobs, *strikes))
