"""Fault schedule search: Hypothesis generates whole plans (jobs and events), each is played on
a fresh run, a failure is believed only when it repeats, and a believed failure is shrunk to
a minimal plan, printed with the command that replays it.

The pieces, each usable alone:

- :func:`plans`: a Hypothesis strategy of :class:`~harness.nemesis.events.Plan` values;
- :class:`Search`: :meth:`Search.fails` (play twice, believe only two invalid verdicts),
  :meth:`Search.find` (seeded through Hypothesis's public ``seed`` decorator),
  :meth:`Search.shrink`, :meth:`Search.report`;
- :func:`shrink`: the bounded greedy shrink itself, pure, for any ``fails`` predicate.

Shrinking is ours, not Hypothesis's: on a live system each candidate costs seconds and must
fail twice, so it is a bounded greedy search (drop an event, drop jobs) rather than
Hypothesis's open-ended one, and a believed failure is kept rather than raised (Hypothesis
would replay it a third time and, on a live system, call it flaky).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from harness.checkers import Validity
from harness.contract import Job, Policy, alloc, db_write, email, fail, job, sleep
from harness.nemesis.events import BUSY, LINKS, Event, Plan, Trigger
from harness.nemesis.interpreter import TriggerTimeout
from harness.profile import FEATURES
from harness.run.policy import SCENARIO_POLICY, RunPolicy
from harness.run.run import ChaosRun

FAST_SHAPES: Final = ("plain", "flaky", "poison")
ALL_SHAPES: Final = (*FAST_SHAPES, "slow", "hog")
# The scenario policy with a backoff well above the time a worker takes to pick up a retry it
# may run at once, so a retry without backoff stands out even on a loaded machine.
SEARCH_POLICY: Final = SCENARIO_POLICY.tuned(backoff_base=0.4, backoff_cap=0.8)


def shaped_job(shape: str, n: int, policy: Policy) -> Job:
    """Job number ``n`` of a shape: ``plain`` (an effect, a short sleep, an email), ``flaky``
    (fails once), ``poison`` (always fails), ``slow`` (outlives the timeout), ``hog`` (over the
    memory limit)."""
    name = f"s{n}-{shape}"
    return {"plain": lambda: job(name, db_write(), sleep(0.1), email()),
            "flaky": lambda: job(name, fail(times=1), db_write()),
            "poison": lambda: job(name, fail()),
            "slow": lambda: job(name, db_write(), sleep(policy.job_timeout * 1.5)),
            "hog": lambda: job(name, alloc(policy.memory_limit_mb * 2)),
            }[shape]()


def plans(*, policy: Policy, max_jobs: int, max_events: int, horizon: float, workers: int,
          shapes: Sequence[str] = FAST_SHAPES, longest_fault: float = 1.5,
          features: Collection[str] = FEATURES) -> st.SearchStrategy[Plan]:
    """Plans of up to ``max_jobs`` jobs (mostly ``plain``, some of the other ``shapes``) and
    ``max_events`` events, each at a moment within ``horizon`` seconds or once some attempts
    started: kills, SIGTERMs (if the worker has ``warm_shutdown`` among its ``features``) and
    pauses of a given or the busy worker, link faults, re-dispatches (if it has ``dedupe``).
    Hypothesis's own shrinking (unused on live runs) goes towards fewer events, fewer jobs,
    earlier and shorter faults."""
    times = st.floats(0.0, horizon, allow_nan=False).map(lambda x: round(x, 2))
    lasting = st.floats(0.05, longest_fault, allow_nan=False).map(lambda x: round(x, 2))
    # A strike at a moment, or once some attempts have started (then it lands on running work).
    when = st.one_of(times.map(lambda t: Trigger(at=t)),
                     st.integers(1, max_jobs).map(lambda n: Trigger(attempts=n)))
    worker = st.one_of(st.just(BUSY), st.integers(0, workers - 1))
    sigterms = [st.builds(lambda w, t: Event("signal", w, t, params={"signal": "SIGTERM",
                                                                     "count": 1}),
                          worker, when)] if "warm_shutdown" in features else []
    worker_events = st.one_of(
        st.builds(lambda w, t: Event("kill", w, t), worker, when), *sigterms,
        st.builds(lambda w, t, d: Event("pause", w, t, d), worker, when, lasting))
    link_events = st.builds(lambda k, link, t, d: Event(k, link, t, d),
                            st.sampled_from(("down", "latency", "reset_peer", "blackhole")),
                            st.sampled_from(LINKS), when, lasting).map(_link_params)
    redispatches = st.builds(lambda n, t: Event("redispatch", n, t),
                             st.integers(0, max_jobs - 1), when)
    events = st.lists(st.one_of(worker_events, link_events,
                                *([redispatches] if "dedupe" in features else [])),
                      max_size=max_events)
    kinds = st.lists(st.sampled_from(shapes[1:]) if len(shapes) > 1 else st.just("plain"),
                     max_size=max(1, max_jobs // 4))
    return st.builds(_plan, st.integers(1, max_jobs), kinds, events, st.just(workers),
                     st.just(policy))


def _link_params(e: Event) -> Event:
    return Event(e.kind, e.target, e.when, e.duration, {"ms": 200} if e.kind == "latency" else {})


def _plan(n_jobs: int, special: list[str], events: list[Event], workers: int,
          policy: Policy) -> Plan:
    shapes = (special + ["plain"] * n_jobs)[:n_jobs]
    jobs = tuple(shaped_job(s, i, policy) for i, s in enumerate(shapes))
    fitted = [replace(e, when=replace(e.when, attempts=min(e.when.attempts, n_jobs)))
              for e in events]  # every job starts at least one attempt
    fitted = [replace(e, target=jobs[int(e.target) % n_jobs].id) if e.kind == "redispatch"
              else e for e in fitted]
    # In order of when they may fire: by moment, then by how much work they wait for.
    return Plan(workers, jobs, tuple(sorted(fitted, key=lambda e: (e.when.at, e.when.attempts))))


def candidates(plan: Plan) -> Iterator[Plan]:
    """Smaller plans, in the order worth trying (big steps first, as delta debugging does):
    no events at all, half the jobs (first, since it makes every later candidate cheaper to
    play; jobs events name are kept), each half of the events, one event less (latest first),
    one job less (for a few jobs)."""
    n = len(plan.events)
    if n > 1:
        yield _with_events(plan, ())
    named = [str(e.target) for e in plan.events if e.kind in ("dispatch", "redispatch")]
    ids = [j.id for j in plan.jobs]
    if len(ids) > 2:
        keep = set(named) | set(ids[: max(1, len(ids) // 2)])
        if len(keep) < len(ids):
            yield plan.with_jobs(keep)
    if n > 3:
        yield _with_events(plan, plan.events[: n // 2])
        yield _with_events(plan, plan.events[n // 2:])
    for i in reversed(range(n)):
        yield plan.without_event(i)
    if 1 < len(ids) <= 4:
        for drop in ids:
            if drop not in named:
                yield plan.with_jobs(set(ids) - {drop})


def _with_events(plan: Plan, events: tuple[Event, ...]) -> Plan:
    """``plan`` with only ``events``; a job held back for a dropped ``dispatch`` event is then
    dispatched at the start."""
    return replace(plan, events=events)


def shrink(plan: Plan, fails: Callable[[Plan], bool], *, budget: int = 24) -> tuple[Plan, int]:
    """Greedy delta-debugging of a failing plan: take the first candidate that still fails,
    start again from it; stop when none does or ``budget`` candidates were tried. Returns the
    smallest failing plan and the number of candidates tried."""
    tried = 0
    current = plan
    improved = True
    while improved and tried < budget:
        improved = False
        for candidate in candidates(current):
            if tried >= budget:
                break
            tried += 1
            if fails(candidate):
                current, improved = candidate, True
                break
    return current, tried


class UndecidedRun(Exception):
    """A run whose verdict was unknown: not a pass, and not a schedule's fault to shrink."""


@dataclass
class Search:
    """Plays plans on fresh runs from ``new_run`` (``chaos_factory``) and keeps the verdict of
    the believed failure (during shrinking, that of the smallest failing plan so far)."""

    new_run: Callable[[str], contextlib.AbstractContextManager[ChaosRun]]
    policy: RunPolicy = SEARCH_POLICY
    failing: ChaosRun | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    _labels: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _started: float = field(default_factory=time.monotonic)

    def fails(self, plan: Plan) -> bool:
        """True only if ``plan`` gives an invalid verdict twice in a row; an unknown verdict
        raises :class:`UndecidedRun` with its text."""
        label = f"plan{next(self._labels)}"
        last: ChaosRun | None = None
        for attempt in (1, 2):
            with self.new_run(f"{label}-run{attempt}") as run:
                run.prefer(**self.policy.to_dict())
                try:
                    judgement = run.play(plan)
                except TriggerTimeout:
                    # The work an event waited for never came (a job lost before its first
                    # attempt, say): judge what happened, as with any other run.
                    run.drain()
                    judgement = run.finish()
                if judgement.result.validity is Validity.UNKNOWN:
                    raise UndecidedRun(judgement.text)
                if judgement.valid:
                    return False
                last = run
        self.failing = last
        self.figures.setdefault("first_failure_s", round(time.monotonic() - self._started, 1))
        return True

    def find(self, strategy: st.SearchStrategy[Plan], *, examples: int, seed_: int
             ) -> Plan | None:
        """The first generated plan that :meth:`fails`, or None after ``examples`` plans."""
        found: list[Plan] = []

        @seed(seed_)
        @settings(max_examples=examples, deadline=None, database=None,
                  phases=(Phase.generate,), suppress_health_check=list(HealthCheck))
        @given(strategy)
        def search(plan: Plan) -> None:
            if not found and self.fails(plan):
                found.append(plan)

        search()
        return found[0] if found else None

    def shrink(self, plan: Plan, *, budget: int) -> tuple[Plan, int]:
        minimal, tried = shrink(plan, self.fails, budget=budget)
        self.figures.update(shrunk_s=round(time.monotonic() - self._started, 1),
                            events_before=len(plan.events), events=len(minimal.events),
                            jobs=len(minimal.jobs), candidates=tried)
        return minimal, tried

    def report(self, plan: Plan, headline: str) -> str:
        """The minimal plan, the command that replays it, and its verdict."""
        assert self.failing is not None and self.failing.judgement is not None
        return (f"{headline}:\n{plan.describe()}\n\nreplay: {self.failing.replay_command()}"
                f"\n\n{self.failing.judgement.text}")

    def save_figures(self, path: Path) -> None:
        path.write_text(json.dumps(self.figures))
