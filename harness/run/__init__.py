"""Scenario runs, split by step: the world and its workers (``world``), the workload
(``workload``), the nemesis (:mod:`harness.nemesis`), drain and observe (``drain``), judge
and report (``judge``), behind one object (:class:`ChaosRun`) made by one builder
(``builder``). See docs/writing-scenarios.md."""

from __future__ import annotations

from dataclasses import dataclass

from harness.run.builder import RunBuilder
from harness.run.policy import SCENARIO_POLICY, RunPolicy
from harness.run.run import ChaosRun


@dataclass(frozen=True, slots=True)
class Profile:
    """How much a scenario does: ``pr`` is fast enough for every pull request, ``nightly``
    runs more jobs, more workers and more fault rounds."""

    name: str
    jobs: int
    workers: int
    rounds: int


PROFILES = {
    "pr": Profile("pr", jobs=12, workers=2, rounds=2),
    "nightly": Profile("nightly", jobs=60, workers=3, rounds=6),
}

__all__ = ["PROFILES", "SCENARIO_POLICY", "ChaosRun", "Profile", "RunBuilder", "RunPolicy"]
