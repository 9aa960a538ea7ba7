"""One builder of scenario runs for both fixtures: ``chaos`` (one run per test) and
``chaos_factory`` (fresh runs inside one test, for schedule search). Each run gets its own
PostgreSQL database, Redis database and queue, history and artifacts directory, on the
session's stack and proxied links (each worker its own, from the session's pool); the links
get no recorder of their own (the nemesis records every fault). With ``own_redis`` (a
persistence), each run gets a Redis server of its own instead of a database on the stack's
(:mod:`harness.run.dedicated`)."""

from __future__ import annotations

import contextlib
import itertools
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.contract import Connections
from harness.errors import JobchaosError
from harness.faults.links import Faults, LinkPool
from harness.history import Recorder
from harness.nemesis.replay import Replay
from harness.run.dedicated import dedicated_redis
from harness.run.policy import SCENARIO_POLICY
from harness.run.run import ChaosRun
from harness.run.world import WorkerSpec, World
from harness.services.postgres import PostgresServer
from harness.services.redis import Persistence, RedisServer
from harness.services.stack import SinkView, Stack


class NoVerdictError(JobchaosError):
    """A run did things (workers, dispatches) and ended without a verdict."""


def safe_name(text: str) -> str:
    """``text`` made safe for a path (artifacts directories are named after node ids)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:150]


class RunBuilder:
    """Makes :class:`ChaosRun` s for one test."""

    def __init__(self, *, test: str, stack: Stack, links: Faults, namespace: str,
                 artifacts: Path, worker: WorkerSpec, seed: int, replay: Replay | None,
                 reproduce: Sequence[str], shrink: int = 0,
                 worker_links: LinkPool | None = None,
                 own_redis: Persistence | None = None) -> None:
        self.test = test
        self.stack = stack
        self.links = links
        self.worker_links = worker_links
        self.namespace = namespace
        self.artifacts = artifacts
        self.worker = worker
        self.seed = seed
        self.replay = replay if replay is not None and replay.test == test else None
        self.reproduce = tuple(reproduce)
        self.shrink_budget = shrink
        self.own_redis = own_redis  # a Redis server per run, with this persistence
        self.runs: list[ChaosRun] = []
        self._numbers = itertools.count(1)

    @contextlib.contextmanager
    def run(self, label: str | None = None, *, require_verdict: bool = True
            ) -> Iterator[ChaosRun]:
        """A fresh run (in ``artifacts/NNN-label`` when labelled, else in ``artifacts``);
        closed, and its database dropped, on exit. With ``require_verdict``, a run that did
        something and ended without a verdict raises :class:`NoVerdictError`."""
        n = next(self._numbers)
        where = self.artifacts / f"{n:03d}-{safe_name(label)}" if label else self.artifacts
        where.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as resources:
            links, redis = self.links, self.stack.redis
            if self.own_redis is not None:
                redis, links = resources.enter_context(dedicated_redis(
                    self.links, where / "redis", persistence=self.own_redis,
                    binary=self.stack.config.redis_bin,
                    start_timeout=self.stack.config.start_timeout))
                redis_url = redis.url()
            else:
                redis_url = self.stack.fresh_redis_url()
            servers = {name: s for name, s in (("redis", redis),
                                               ("postgres", self.stack.postgres))
                       if isinstance(s, RedisServer | PostgresServer)}
            with self._run(n, label, where, redis_url, servers, links,
                           require_verdict) as run:
                yield run

    @contextlib.contextmanager
    def _run(self, n: int, label: str | None, where: Path, redis_url: str,
             servers: Mapping[str, Any], links: Faults, require_verdict: bool
             ) -> Iterator[ChaosRun]:
        db_name, db_url = self.stack.fresh_database()
        direct = Connections(redis_url=redis_url, database_url=db_url,
                             smtp_host=self.stack.smtp.host, smtp_port=self.stack.smtp.port,
                             queue=f"{self.namespace}:{n}:queue")
        proxied = links.proxied(direct)
        links.recorder = None  # the nemesis records faults, once
        world = World(direct=direct, proxied=proxied, links=links,
                      sink=SinkView(self.stack), servers=servers, worker=self.worker,
                      artifacts=where,
                      # The per-worker links lead to the stack's Redis: a run with a Redis of
                      # its own gives its workers that server's link, shared.
                      worker_links=self.worker_links if self.own_redis is None else None)
        run = ChaosRun(name=f"{self.test}[{label}]" if label else self.test, test=self.test,
                       world=world, recorder=Recorder(where / "history.jsonl"),
                       policy=self.worker.profile.apply(SCENARIO_POLICY),
                       profile=self.worker.profile,
                       seed=self.seed + n - 1, replay=self.replay, reproduce=self.reproduce,
                       shrinker=self._shrink if self.shrink_budget else None)
        self.runs.append(run)
        try:
            yield run
            if require_verdict and run.touched and run.judgement is None:
                raise NoVerdictError(
                    f"run {run.name} started workers or dispatched jobs and ended without a "
                    "verdict: end it with run.check(plan), run.play(plan) or run.finish()")
        finally:
            try:
                run.close()
            finally:
                with contextlib.suppress(Exception):
                    self.stack.drop_database(db_name)

    def _shrink(self, failed: ChaosRun) -> str:
        """Shrink a failing run's plan on fresh runs; the minimal plan and its replay."""
        from harness.search import Search

        assert failed.plan is not None
        search = Search(self.run, policy=failed.policy)
        minimal, tried = search.shrink(failed.plan, budget=self.shrink_budget)
        if search.failing is None:
            return (f"shrinking: none of {tried} smaller plans failed twice; the plan above "
                    "is the smallest known")
        return search.report(minimal, f"shrunk in {tried} candidates from "
                                      f"{len(failed.plan.jobs)} jobs and "
                                      f"{len(failed.plan.events)} events")

    @property
    def reported(self) -> ChaosRun | None:
        """The run a failure report should name: the first that was not valid, else the
        last one."""
        failing = [r for r in self.runs if r.judgement is not None and not r.judgement.valid]
        return failing[0] if failing else (self.runs[-1] if self.runs else None)
