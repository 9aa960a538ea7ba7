"""One scenario run: workers, workload, nemesis, heal, drain, observe, check, report.

A :class:`ChaosRun` holds everything a scenario touches (the proxied links, the worker pool,
the history recorder, a seeded RNG) and offers the steps of docs/architecture.md as methods.
Every step that changes the world writes its ops to the history; the verdict comes only from
the history (:meth:`ChaosRun.verdict`), and the artifacts (history.jsonl, results.json,
verdict.txt) are written even when the scenario errors.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import collectors
from harness import history as h
from harness.checkers import CheckResult, Validity, check
from harness.checkers import Policy as CheckPolicy
from harness.checkers.policy import DEFAULT_GUARANTEES
from harness.contract import BACKOFF_JITTER, Connections, Job, Policy, dispatch
from harness.faults.links import Faults
from harness.report.verdict import render, write_results
from harness.services.base import log_tail
from harness.services.workers import REFERENCE_WORKER, WorkerPool, WorkerStartError

REFERENCE_PROBE = (REFERENCE_WORKER[0], "-m", "reference_worker.probe")


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

# Production knobs are minutes; scenarios run on these, and derive every wait from them.
SCENARIO_POLICY = Policy(job_timeout=1.0, max_tries=3, backoff_base=0.1, backoff_cap=0.4,
                         lease=2.0, lock_ttl=3.0, memory_limit_mb=64, shutdown_grace=1.5)


@dataclass
class RunSpec:
    """What to run and against which worker (from the plugin's settings)."""

    worker_argv: Sequence[str] = REFERENCE_WORKER
    probe_argv: Sequence[str] | None = REFERENCE_PROBE
    worker_env: Mapping[str, str] = field(default_factory=dict)
    seed: int = 0


class ChaosRun:
    """The live state of one scenario and the steps it can take."""

    def __init__(self, *, name: str, policy: Policy, direct: Connections, proxied: Connections,
                 faults: Faults, sink: Any, artifacts: Path, spec: RunSpec,
                 recorder: h.Recorder) -> None:
        self.name = name
        self.policy = policy
        self.direct = direct
        self.proxied = proxied
        self.faults = faults
        self.sink = sink
        self.artifacts = artifacts
        self.spec = spec
        self.recorder = recorder
        self.rng = random.Random(spec.seed)
        self.pool: WorkerPool | None = None
        self.dispatched: dict[str, Job] = {}
        self._nemesis_ids = itertools.count(1)
        self._result: CheckResult | None = None
        self._history: h.History | None = None
        self.judged = False
        self.started = time.monotonic()
        self.nemesis_waits = 0.0  # seconds the scenario deliberately held faults or paused
        self._struck: set[str] = set()  # workers the nemesis killed or signalled
        self.recoveries = 0  # kills whose jobs only a lease expiry can recover

    # -- workers -------------------------------------------------------------------------
    def start_workers(self, size: int = 2, *, policy: Policy | None = None) -> WorkerPool:
        """Start ``size`` workers connected through the fault proxy."""
        self.pool = WorkerPool(self.proxied, policy or self.policy, size=size,
                               argv=self.spec.worker_argv, logdir=self.artifacts,
                               extra_env=self.spec.worker_env, startup_check=0.2).start()
        return self.pool

    def check_workers(self) -> None:
        """Fail fast, with its log, if a worker died that the nemesis did not kill or signal."""
        if self.pool is None:
            return
        for w in self.pool.workers:
            if not w.running() and w.worker_id not in self._struck:
                raise WorkerStartError(
                    f"{w.worker_id} exited with code {w.returncode} on its own.\n"
                    f"  command: {' '.join(w.argv)}\n  log: {w.log_path}\n"
                    f"  last lines of its log:\n{log_tail(w.log_path)}")

    def _workers(self) -> WorkerPool:
        assert self.pool is not None, "start_workers() first"
        return self.pool

    def pick_worker(self) -> int:
        """A random worker index, from the run's seeded RNG."""
        return self.rng.randrange(len(self._workers()))

    def worker_index(self, worker_id: str) -> int:
        return next(i for i, w in enumerate(self._workers().workers) if w.worker_id == worker_id)

    def busy_worker(self, table: str = "chaos_effects") -> int:
        """Index of the worker that wrote the newest row of ``table`` (it is mid-job now)."""
        import psycopg

        with psycopg.connect(self.direct.database_url, connect_timeout=5) as conn:
            row = conn.execute(f"SELECT worker FROM {table} ORDER BY id DESC LIMIT 1").fetchone()
        return self.worker_index(row[0]) if row else self.pick_worker()

    def pause(self, longest: float) -> float:
        """Wait a seeded random time up to ``longest``: the nemesis choosing when to strike."""
        delay = self.rng.uniform(0, longest)
        time.sleep(delay)
        self.nemesis_waits += delay
        return delay

    def hold(self, seconds: float) -> None:
        """Keep a fault in place for ``seconds`` (a window derived from the policy)."""
        time.sleep(seconds)
        self.nemesis_waits += seconds

    def kill_worker(self, index: int | None = None) -> str:
        """SIGKILL a worker (and its job children), as a crash or the OOM killer would."""
        w = self._workers()[self.pick_worker() if index is None else index]
        self._nemesis("inject", w.worker_id, "kill", {"pid": w.pid, "signal": "SIGKILL"})
        self._struck.add(w.worker_id)
        w.kill()
        self.recoveries += 1
        return w.worker_id

    def signal_worker(self, index: int, sig: int) -> str:
        """Send ``sig`` to a worker process (SIGTERM: a deploy or scale-down)."""
        w = self._workers()[index]
        self._nemesis("inject", w.worker_id, "signal", {"pid": w.pid,
                                                        "signal": signal.Signals(sig).name})
        self._struck.add(w.worker_id)
        w.signal(sig)
        return w.worker_id

    def wait_worker_exit(self, index: int, timeout: float | None = None) -> int:
        """Wait for a signalled worker to exit (bounded by its grace period); its exit code."""
        limit = self.policy.shutdown_grace + self.policy.job_timeout + 2 if timeout is None \
            else timeout
        w = self._workers()[index]
        try:
            return w.wait(limit)
        except Exception as exc:
            raise TimeoutError(f"{w.worker_id} did not exit within {limit:.1f} s of its "
                               f"signal (shutdown grace {self.policy.shutdown_grace} s)") from exc

    def restart_dead(self) -> list[str]:
        """Restart every worker that is not running, as a supervisor would (a heal op each)."""
        restarted = self._workers().restart_dead()
        for worker_id in restarted:
            self._struck.discard(worker_id)
            self._nemesis("heal", worker_id, "restart", {})
        return restarted

    def _nemesis(self, phase: str, target: str, kind: str, params: Mapping[str, object]) -> None:
        self.recorder.record_fault(phase, f"{kind}-{next(self._nemesis_ids)}",  # type: ignore[arg-type]
                                   target, kind, params)

    # -- workload ------------------------------------------------------------------------
    def dispatch(self, *jobs: Job, through_proxy: bool = False, timeout: float = 5.0) -> None:
        """Put ``jobs`` on the queue, one dispatch op each (``info`` when the ack was lost)."""
        import redis

        url = (self.proxied if through_proxy else self.direct).redis_url
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        with contextlib.closing(client):
            for j in jobs:
                op = self.recorder.invoke(h.DISPATCHER, h.DISPATCH,
                                          h.dispatch_value(j.id, list(j.steps), j.unique_key))
                self.dispatched.setdefault(j.id, j)
                try:
                    dispatch(client, self.direct.queue, [j])
                except redis.ConnectionError as exc:
                    # Refused before sending: it did not happen. Cut after: unknown.
                    kind = "fail" if "Connection refused" in str(exc) else "info"
                    self.recorder.complete(op, kind, {"job": j.id, "error": str(exc)})  # type: ignore[arg-type]
                except redis.TimeoutError as exc:
                    self.recorder.info(op, {"job": j.id, "error": str(exc)})
                else:
                    self.recorder.ok(op, {"job": j.id})

    def wait_queue_empty(self, timeout: float | None = None) -> None:
        """Wait until the queue list is empty (every dispatched copy was taken by a worker)."""
        limit = self.policy.lease * 2 if timeout is None else timeout
        end = time.monotonic() + limit
        while self.queued():
            if time.monotonic() >= end:
                raise TimeoutError(f"{self.name}: queue not empty after {limit:.1f} s")
            time.sleep(0.02)

    # -- drain, observe, check ----------------------------------------------------------
    def check_policy(self, **overrides: Any) -> CheckPolicy:
        """The checkers' policy for this run; ``guarantees`` given here amend the defaults."""
        if "guarantees" in overrides:
            overrides["guarantees"] = {**DEFAULT_GUARANTEES, **overrides["guarantees"]}
        return CheckPolicy.for_worker(self.policy, jitter=BACKOFF_JITTER, **overrides)

    def _count(self, sql: str) -> int:
        import psycopg

        with psycopg.connect(self.direct.database_url, connect_timeout=5) as conn:
            row = conn.execute(sql).fetchone()
        return int(row[0]) if row else 0

    def wait_for(self, what: str, sql: str, at_least: int, timeout: float) -> int:
        """Poll ``sql`` (a count) until it reaches ``at_least``; TimeoutError names ``what``."""
        end = time.monotonic() + timeout
        count = 0
        while True:
            self.check_workers()
            with contextlib.suppress(Exception):
                count = self._count(sql)
            if count >= at_least:
                return count
            if time.monotonic() >= end:
                raise TimeoutError(f"{self.name}: waited {timeout:.1f} s for {what}; "
                                   f"saw {count} of {at_least}")
            time.sleep(0.02)

    def wait_for_attempts(self, n: int, timeout: float | None = None) -> int:
        """Wait until ``n`` attempts have started (jobs are running: a moment to strike)."""
        return self.wait_for(f"{n} attempts to start", "SELECT count(*) FROM chaos_attempts", n,
                             self.policy.job_timeout * 5 if timeout is None else timeout)

    def wait_for_effects(self, n: int, timeout: float | None = None) -> int:
        return self.wait_for(f"{n} effect rows", "SELECT count(*) FROM chaos_effects", n,
                             self.policy.job_timeout * 5 if timeout is None else timeout)

    def terminal_jobs(self) -> set[str]:
        import psycopg

        with psycopg.connect(self.direct.database_url, connect_timeout=5) as conn:
            rows = conn.execute("SELECT DISTINCT job_id FROM chaos_outcomes "
                                "WHERE status IN ('completed', 'dead')").fetchall()
        return {r[0] for r in rows}

    def queued(self) -> int:
        """How many dispatched copies still wait on the queue list (none taken by a worker)."""
        import redis

        with contextlib.closing(redis.Redis.from_url(self.direct.redis_url,
                                                     socket_timeout=5)) as client:
            return int(client.llen(self.direct.queue))

    def drain(self, deadline: float | None = None) -> bool:
        """Wait until every dispatched job has a terminal outcome and every copy on the queue
        was taken (a duplicate dispatch of a finished job must be consumed, not left behind),
        or until the policy's deadline."""
        limit = self.check_policy().drain_deadline_s if deadline is None else deadline
        op = self.recorder.invoke(h.OBSERVER, h.DRAIN, {"deadline": limit})
        end = time.monotonic() + limit
        pending, queued = set(self.dispatched), -1
        while True:
            self.check_workers()
            with contextlib.suppress(Exception):  # the links may still be recovering
                pending = set(self.dispatched) - self.terminal_jobs()
                queued = self.queued()
            if (not pending and queued == 0) or time.monotonic() >= end:
                break
            time.sleep(0.05)
        if pending or queued:
            self.recorder.info(op, {"pending": len(pending), "queued": queued,
                                    "jobs": sorted(pending)[:20]})
            return False
        self.recorder.ok(op, {"pending": 0, "queued": 0})
        return True

    def observe(self) -> None:
        """Append what the harness sees: table rows, sink messages, and the probe's answer."""
        self.recorder.observe(*collectors.table_observations(
            collectors.read_tables(self.direct.database_url)))
        if self.sink is not None:
            self.recorder.observe(*collectors.message_observations(self.sink.messages()))
        state, reason = None, "no probe configured"
        if self.spec.probe_argv:
            from harness.contract import worker_env

            try:
                state = collectors.run_probe(self.spec.probe_argv,
                                             {**self.spec.worker_env,
                                              **worker_env(self.direct, self.policy, "probe")})
            except RuntimeError as exc:
                reason = str(exc)
        self.recorder.observe(*collectors.probe_observations(state, reason))

    def verdict(self, **policy_overrides: Any) -> CheckResult:
        """Check the history and write results.json and verdict.txt."""
        history = self.recorder.history()
        policy = self.check_policy(**policy_overrides)
        result = check(history, policy)
        self._result, self._history = result, history
        self.judged = True
        write_results(self.artifacts / "results.json", result, history, policy)
        (self.artifacts / "verdict.txt").write_text(self.render())
        return result

    def render(self) -> str:
        assert self._result is not None and self._history is not None
        head = (f"scenario {self.name}: {self._result.validity} (seed {self.spec.seed}, "
                f"{len(self.dispatched)} jobs, artifacts {self.artifacts})")
        return head + "\n" + render(self._result, self._history)

    def finish(self, **policy_overrides: Any) -> CheckResult:
        """Heal everything, stop the workers, observe, and check: the end of every scenario."""
        self.faults.heal_all()
        if self.pool is not None:
            self.pool.stop(grace=self.policy.shutdown_grace + 2)
        self.observe()
        return self.verdict(**policy_overrides)

    def close(self) -> None:
        """Teardown: whatever happened, leave nothing running and a history on disk."""
        with contextlib.suppress(Exception):
            self.faults.heal_all()
        if self.pool is not None:
            self.pool.stop(grace=2)
        (self.artifacts / "run.json").write_text(json.dumps({
            "scenario": self.name, "seed": self.spec.seed, "jobs": len(self.dispatched),
            "seconds": round(time.monotonic() - self.started, 3),
            "forced_wait": round(self.forced_wait(), 3),
            "validity": str(self._result.validity) if self._result else None,
        }))
        self.recorder.close()


    def forced_wait(self) -> float:
        """The least time the policy forces on this run: the longest job chain (or all the
        work spread over the workers, if longer), every lease a kill makes recovery wait for,
        and the nemesis's own holds and pauses. Used by benchmarks/suite_time.py."""
        chains = [job_chain(j, self.policy) for j in self.dispatched.values()]
        workers = len(self.pool) if self.pool else 1
        work = max(max(chains, default=0.0), sum(chains) / workers)
        return work + self.recoveries * self.policy.lease + self.nemesis_waits


def job_chain(j: Job, policy: Policy) -> float:
    """Seconds one job needs at least: its attempts (each cut at the timeout) and backoffs."""
    run = sum(float(s.get("seconds", 0)) for s in j.steps if s["op"] in ("sleep", "cpu"))
    run += sum(float(s.get("hold", 0)) for s in j.steps if s["op"] == "alloc")
    per_attempt = min(run, policy.job_timeout)
    doomed = run > policy.job_timeout or any(
        (s["op"] == "fail" and s.get("times") is None)
        or (s["op"] == "alloc" and int(s["mb"]) > policy.memory_limit_mb) for s in j.steps)
    failing = [int(s.get("times") or 0) for s in j.steps if s["op"] in ("fail", "crash")]
    attempts = policy.max_tries if doomed else min(policy.max_tries, 1 + max(failing, default=0))
    return attempts * per_attempt + sum(policy.backoff(k) for k in range(1, attempts))


def assert_valid(result: CheckResult, text: str) -> None:
    """Fail the test with the readable verdict unless the run is valid."""
    import pytest

    if result.validity is not Validity.VALID:
        pytest.fail(text, pytrace=False)

