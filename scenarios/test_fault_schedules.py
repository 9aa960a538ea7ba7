"""Property-based fault schedules: Hypothesis generates timed faults over workers and links
(plus duplicate dispatches) as data, runs each on a fresh world, and checks the history.

Guards against the failures nobody thought to script: combinations and timings of crashes,
deploys and link faults. A failure is believed only if the same schedule fails twice (a live
system is not deterministic); the minimal schedule is printed with its seed and the one
command that replays it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from harness.checkers import Validity
from harness.schedules import Schedule, execute, save, schedules

BUDGET = {"pr": 3, "nightly": 25}  # examples per run


def _judge(chaos_factory, schedule: Schedule, label: str) -> tuple[bool, str, str]:
    """Run ``schedule`` twice if it fails; (failed both times, verdict, artifacts)."""
    texts = []
    for attempt in (1, 2):
        with chaos_factory(f"{label}-run{attempt}") as run:
            result = execute(run, schedule)
            texts.append(run.render())
            if result.validity is not Validity.INVALID:
                return False, "", str(run.artifacts)
            where = run.artifacts
    return True, texts[-1], str(where)


class ScheduleFailed(AssertionError):
    """A schedule whose history was invalid twice in a row."""


def _failure(schedule: Schedule, verdict: str, artifacts: str, seed: int) -> ScheduleFailed:
    path = save(schedule, Path(artifacts) / "schedule.json")
    return ScheduleFailed(
        f"fault schedule failed twice (seed {seed}):\n{schedule.describe()}\n\n"
        f"replay: pytest scenarios/test_fault_schedules.py --jobchaos-replay {path}\n\n{verdict}")


def test_fault_schedules(chaos_factory, jobchaos_config, jobchaos_profile, jobchaos_seed):
    if jobchaos_config.replay is not None:
        schedule = Schedule.from_json(jobchaos_config.replay.read_text())
        failed, verdict, artifacts = _judge(chaos_factory, schedule, "replay")
        if failed:
            pytest.fail(str(_failure(schedule, verdict, artifacts, jobchaos_seed)), pytrace=False)
        return

    examples = iter(range(1, 10**6))

    @settings(max_examples=BUDGET[jobchaos_profile.name], deadline=None, database=None,
              derandomize=False, phases=(Phase.generate, Phase.shrink),
              suppress_health_check=list(HealthCheck))
    @given(schedules(max_jobs=jobchaos_profile.jobs, max_events=6, horizon=2.0,
                     workers=jobchaos_profile.workers))
    def property_holds(schedule: Schedule) -> None:
        failed, verdict, artifacts = _judge(chaos_factory, schedule, f"example{next(examples)}")
        if failed:
            raise _failure(schedule, verdict, artifacts, jobchaos_seed)

    property_holds._hypothesis_internal_use_seed = jobchaos_seed  # replayable from the seed
    try:
        property_holds()
    except ScheduleFailed as exc:  # the minimal failing schedule, after shrinking
        pytest.fail(str(exc), pytrace=False)
