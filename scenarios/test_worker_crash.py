"""Worker crash: SIGKILL workers mid-job, restart them; nothing lost, effects exactly once.

Guards against three real failures: a job popped off the queue and lost when the process dies
(pop-then-process fetch, as in Resque and early RQ), the in-flight jobs of a dead worker left
forever because nothing reclaims them (no reaper), and a side effect written twice because the
retry after a crash between the effect and the acknowledgement repeats it.
"""

from __future__ import annotations

from harness.contract import db_write, email, job, sleep
from harness.scenario import assert_valid


def test_sigkill_between_effect_and_ack(chaos, jobchaos_profile):
    profile = jobchaos_profile
    chaos.start_workers(profile.workers)
    hold = chaos.policy.job_timeout * 0.3  # the window between the effect and the ack
    chaos.dispatch(*[job(f"crash-{i}", db_write(), sleep(hold), email())
                     for i in range(profile.jobs)])
    for round_ in range(1, profile.rounds + 1):
        chaos.wait_for_effects(round_ * 2)
        chaos.kill_worker(chaos.busy_worker())  # it has written its effect, not yet acked
        chaos.restart_dead()
    chaos.drain()
    assert_valid(chaos.finish(), chaos.render())


def test_sigkill_at_random_moments(chaos, jobchaos_profile):
    profile = jobchaos_profile
    chaos.start_workers(profile.workers)
    chaos.dispatch(*[job(f"rand-{i}", sleep(0.05), db_write(), sleep(0.1), db_write())
                     for i in range(profile.jobs)])
    for round_ in range(1, profile.rounds + 1):
        chaos.wait_for_attempts(round_)
        chaos.pause(0.2)  # strike anywhere in a job: before, during or after its effects
        chaos.kill_worker()
        chaos.restart_dead()
    chaos.drain()
    assert_valid(chaos.finish(), chaos.render())
