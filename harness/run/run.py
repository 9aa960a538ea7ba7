"""One scenario run: the steps of docs/architecture.md, each in its own module, behind one
small object.

A scenario hands a :class:`~harness.nemesis.events.Plan` to :meth:`ChaosRun.check`: the run
starts the workers, dispatches the jobs, lets the nemesis apply the events (healing each),
drains, observes, judges the history and fails the test unless the verdict is valid. The plan,
the history, ``results.json``, ``verdict.txt`` and ``run.json`` are written into the run's
artifacts even when the scenario errors.
"""

from __future__ import annotations

import contextlib
import json
import random
import shlex
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.checkers import Validity
from harness.contract import Job
from harness.history import Recorder
from harness.nemesis.events import Plan
from harness.nemesis.interpreter import Nemesis
from harness.nemesis.replay import Replay
from harness.profile import DEFAULT_PROFILE, WorkerProfile
from harness.run import accounting
from harness.run.drain import drain, observe, probe_of
from harness.run.gauges import Gauges
from harness.run.judge import Judgement, judge
from harness.run.policy import SCENARIO_POLICY, RunPolicy
from harness.run.watchdog import Watchdog
from harness.run.workload import Workload
from harness.run.world import World
from harness.services.pool import WorkerPool


class ChaosRun:
    """The live state of one scenario run and the calls a scenario makes on it."""

    def __init__(self, *, name: str, test: str, world: World, recorder: Recorder, seed: int,
                 policy: RunPolicy = SCENARIO_POLICY, profile: WorkerProfile = DEFAULT_PROFILE,
                 replay: Replay | None = None,
                 reproduce: Sequence[str] = (),
                 shrinker: Callable[[ChaosRun], str] | None = None) -> None:
        self.name = name  # the run's label: the test's node id, plus a label for one of many
        self.test = test  # the pytest node id of the test it runs in
        self.world = world
        self.recorder = recorder
        self.seed = seed
        self.replay = replay  # a replay file naming this test: it replaces the plan
        self.reproduce = tuple(reproduce)  # options that reproduce this session's settings
        self.shrinker = shrinker  # on a failing check(), says what a shrunk plan looks like
        self.profile = profile  # what the worker declares: its policy values are fixed
        self.rng = random.Random(seed)
        self._policy = policy
        self.gauges = Gauges(world.direct, probe_of(world, lambda: self._policy))
        self.workload = Workload(recorder, world.direct, world.proxied, lambda: self._policy,
                                 world.worker.dispatcher)
        self.watchdog = Watchdog(world, self.workload, self.gauges, lambda: self._policy)
        self.nemesis = Nemesis(world, self.workload, self.gauges, recorder,
                               lambda: self._policy, self.watchdog.check)
        self.plan: Plan | None = None
        self.judgement: Judgement | None = None
        self.started = time.monotonic()

    # -- the policy: one object, for the workers and the checkers ----------------------------
    @property
    def policy(self) -> RunPolicy:
        return self._policy

    def tune(self, **changes: object) -> RunPolicy:
        """Change the run's policy (``lease=0.8``, ``guarantees={"email": "exactly_once"}``)
        before the workers start; afterwards it is fixed, since they were configured with it.

        The scenario needs these values: when the worker profile declares another value for
        one of them (the worker's truth), the test is skipped as not applicable."""
        if self.world.pool is not None:
            raise RuntimeError("tune() the policy before the workers start: they were "
                               "configured with it")
        clashes = self.profile.clashes(changes, self._policy)
        if clashes:
            import pytest

            key, (wanted, declared) = next(iter(clashes.items()))
            pytest.skip(f"not applicable: {key} (this scenario runs its worker with {key} = "
                        f"{wanted!r}; the worker profile {self.profile.source} declares "
                        f"{key} = {declared!r})")
        self._policy = self._policy.tuned(**changes)
        return self._policy

    def prefer(self, **changes: object) -> RunPolicy:
        """:meth:`tune` with the values the scenario merely prefers (a longer backoff to make
        hammering stand out, a shorter lease to run faster): declared values are kept."""
        declared = self.profile.policy.items()
        return self.tune(**{k: v for k, v in changes.items() if k not in declared})

    @property
    def artifacts(self) -> Path:
        return self.world.artifacts

    @property
    def touched(self) -> bool:
        """Whether the run did anything that needs a verdict."""
        return self.world.pool is not None or bool(self.workload.dispatched)

    # -- the steps ---------------------------------------------------------------------------
    def start_workers(self, size: int) -> WorkerPool:
        return self.world.start_workers(size, self._policy)

    def dispatch(self, *jobs: Job, through_proxy: bool = False, timeout: float = 5.0) -> None:
        self.workload.dispatch(*jobs, through_proxy=through_proxy, timeout=timeout)

    def perform(self, plan: Plan) -> None:
        """Start the plan's workers (unless started), dispatch its jobs, apply its events,
        heal, and drain. ``replay.json`` is written first, so even a crash leaves it."""
        self.plan = plan
        self.replay_file().save(self.artifacts / "replay.json")
        if self.world.pool is None:
            self.start_workers(plan.workers)
        self.dispatch(*[j for j in plan.jobs if j.id not in plan.held_back])
        self.nemesis.perform(plan)
        self.drain()

    def drain(self, deadline: float | None = None) -> bool:
        """Wait for every dispatched job to be terminal and the worker's system to hold no
        copy of any (by its probe, else the queue list), or the policy's drain deadline; True
        if it got there."""
        limit = self._policy.for_checkers().drain_deadline_s if deadline is None else deadline
        return drain(self.gauges, self.watchdog.check, set(self.workload.dispatched),
                     self.recorder, limit,
                     working=lambda: self.gauges.running_on_live_workers(
                         self.world.started()) > 0)

    def finish(self) -> Judgement:
        """Heal everything, stop the workers, observe, and judge."""
        self.nemesis.heal_all()
        self.world.heal_links()
        self.world.stop(grace=self._policy.shutdown_grace + 2)
        observe(self.recorder, self.world, self._policy)
        heading = (f"scenario {self.name} (seed {self.seed}, {len(self.workload.dispatched)} "
                   f"jobs, artifacts {self.artifacts})")
        self.judgement = judge(self.recorder, self._policy, self.artifacts, heading,
                               ready_timeout=self.world.ready_timeout())
        return self.judgement

    def play(self, plan: Plan) -> Judgement:
        """:meth:`perform` the plan, then :meth:`finish`: the verdict, without asserting."""
        self.perform(plan)
        return self.finish()

    def check(self, plan: Plan) -> Judgement:
        """Play ``plan`` (or the replay file given for this test) and fail the test unless the
        verdict is valid; ``unknown`` fails too, with its reason."""
        if self.replay is not None:
            self._policy = RunPolicy.from_dict(self.replay.policy)
            plan = self.replay.plan
        judgement = self.play(plan)
        if not judgement.valid:
            import pytest

            text = (f"{judgement.text}\n\nplan: {plan.describe()}\n\n"
                    f"replay: {self.replay_command()}")
            if self.shrinker is not None and judgement.result.validity is Validity.INVALID:
                text += "\n\n" + self.shrinker(self)
            pytest.fail(text, pytrace=False)
        return judgement

    # -- reproducing -------------------------------------------------------------------------
    def replay_file(self) -> Replay:
        assert self.plan is not None, "no plan yet"
        return Replay(test=self.test, seed=self.seed,
                      policy=self._policy.to_dict(), plan=self.plan)

    def replay_command(self) -> str:
        """The one command that replays this run, with every option that shaped it."""
        return " ".join(["pytest", shlex.quote(self.test), "--jobchaos-replay",
                         shlex.quote(str(self.artifacts / "replay.json")),
                         *map(shlex.quote, self.reproduce)])

    def forced_wait(self) -> float:
        """The least time the policy forces on this run (benchmarks/suite_time.py)."""
        return accounting.forced_wait(self.workload.dispatched.values(), self._policy,
                                      workers=len(self.world.pool) if self.world.pool else 1,
                                      kills=self.nemesis.kills, held=self.nemesis.held)

    def close(self) -> None:
        """Teardown: whatever happened, leave nothing running and a history on disk."""
        with contextlib.suppress(Exception):
            self.nemesis.heal_all()
        with contextlib.suppress(Exception):
            self.world.heal_links()
        self.world.stop(grace=2)
        self.gauges.close()
        (self.artifacts / "run.json").write_text(json.dumps({
            "scenario": self.name, "seed": self.seed, "jobs": len(self.workload.dispatched),
            "seconds": round(time.monotonic() - self.started, 3),
            "forced_wait": round(self.forced_wait(), 3),
            "validity": str(self.judgement.result.validity) if self.judgement else None,
        }))
        self.recorder.close()
