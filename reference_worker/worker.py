"""The worker: fetch a job with its lease, run one attempt in a child, record, settle, repeat.

The main loop survives every connection error (it logs, backs off, and goes on fetching), and
shuts down warm on the first SIGTERM (no more fetching; the attempt in flight may finish
within ``CHAOS_SHUTDOWN_GRACE``) and cold on the second (the child is killed and the job given
back). The life of one attempt, in the order that makes every crash point safe:

1. ``fetch``: one Lua script moves the job from the queue into flight with lease and attempt;
2. ``start``: the ledger records the attempt (``chaos_attempts``), or says the job already
   finished (a duplicate dispatch), in which case it is dropped;
3. ``run``: the steps run in a child, under the timeout and the memory limit (its
   ``db_write`` effects are made by this process's effects thread, see ``effects``);
4. ``record``: the outcome goes to PostgreSQL (``chaos_outcomes``), idempotently, with the
   time the child was reaped (``chaos_attempts.stopped_at``), also when a reaper's stands;
5. ``settle``: one Lua script ends the lease: done, scheduled for retry, or dead-lettered.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from harness.contract import Connections, Job, Policy, read_env, report_database_url
from reference_worker import ledger, registry, retries
from reference_worker.bugs import Bugs
from reference_worker.child import ForkFailed, Result, run_in_child
from reference_worker.effects import Channel, EffectsThread
from reference_worker.heartbeat import Heartbeat
from reference_worker.ledger import Outcome
from reference_worker.links import (
    LINK_ERRORS,
    REDIS_ERRORS,
    Abandoned,
    describe,
    persist,
    postgres_link,
    retry_delay,
)
from reference_worker.log import log, set_worker
from reference_worker.memory import ENV_MEMORY, memory_guard
from reference_worker.reaper import DISPOSITION, Reaper
from reference_worker.registry import Fetched, Registry
from reference_worker.shutdown import Shutdown
from reference_worker.steps import StepRunner

R = TypeVar("R")
POLL_INTERVAL = 0.05  # seconds between fetches while the queue is empty
FAILURE_REASONS = {"exception": "exception", "timeout": "timeout", "killed": "killed",
                   "memory": "memory", "interrupted": "killed"}


class Worker:
    def __init__(self, conn: Connections, policy: Policy, worker_id: str, bugs: Bugs,
                 memory_mode: str = "auto", report_url: str | None = None) -> None:
        self.conn, self.policy, self.worker_id, self.bugs = conn, policy, worker_id, bugs
        self.report_url = report_url or conn.database_url  # unfaulted: for the ready row
        self.io_timeout = min(5.0, max(0.5, policy.lease / 3))
        self.lease = policy.lease
        self.dedupe = True
        if bugs.on("no_dedupe"):
            # Origin: at-least-once dispatch (a producer retrying after a lost acknowledgement,
            # SQS standard queues delivering twice) into a worker that does not track job ids.
            self.dedupe = False
        self.heartbeat_on = True
        if bugs.on("lease_shorter_than_timeout"):
            # Origin: Laravel's retry_after shorter than the job's $timeout (and SQS visibility
            # timeouts shorter than the job): no heartbeat, so a job still running is released
            # to a second worker.
            self.lease, self.heartbeat_on = policy.job_timeout / 2, False
        self.fetch_lease = self.lease  # what the fetch script records; 0: no lease at all
        if bugs.on("ack_early"):
            # Origin: Celery's default early acknowledgement (task_acks_late=False) and plain
            # RPOP/BRPOP queues: the job is taken off the queue before it runs, so a worker
            # killed mid-job loses it; nothing is left for a reaper to find.
            self.fetch_lease = 0.0
        self.lock_ttl: float | None = policy.lock_ttl
        if bugs.on("lock_never_expires"):
            # Origin: Laravel ShouldBeUnique with $uniqueFor = 0 and WithoutOverlapping without
            # expireAfter: a worker that dies mid-job keeps the lock forever (background/002).
            self.lock_ttl = None
        self.job_timeout = policy.job_timeout
        if bugs.on("timeout_not_enforced"):
            # Origin: Laravel's queue worker without the pcntl extension ("the pcntl PHP
            # extension must be installed in order to specify job timeouts"): $timeout is
            # ignored without a word, and a hung job holds its worker for as long as it hangs.
            self.job_timeout = math.inf
        self.fenced = True  # an attempt records and settles only while it owns its lease
        if bugs.on("zombie_worker"):
            # Origin: the paused lease holder (Kleppmann, "How to do distributed locking",
            # 2016: a client stalled by a GC pause past its lease writes anyway, with no fencing
            # token; HBase region servers hit it), and queue consumers that finish a message
            # after its visibility timeout (SQS) or lease (Redis reliable queues) handed it to
            # another worker: the late result is written and acknowledged regardless.
            self.fenced = False
        restore = True  # a job Redis forgot (a restart without persistence) is put back
        if bugs.on("no_lease_restore"):
            # Origin: Bull's moveToFinished fails with "Missing key for job X finished" or
            # "Missing lock for job X finished" when Redis no longer holds the job or its lock
            # (OptimalBits/bull #1341, #1594; an empty restart, a failover, an eviction): the
            # running job is then neither completed nor retried, and no one hands it back.
            restore = False
        self.registry = Registry(registry.connect(conn.redis_url, self.io_timeout), conn.queue,
                                 worker_id, restore=restore)
        self.db = postgres_link(conn.database_url, self.io_timeout)
        self.shutdown = Shutdown(policy.shutdown_grace)
        self.stalled = False  # only ever set by the stop_consuming_after_link_error bug
        if bugs.on("shutdown_ignores_grace"):
            # Origin: warm shutdowns that wait for every task in flight (Celery's warm
            # shutdown, Sidekiq jobs past their -t timeout): the orchestrator's SIGKILL comes
            # first and kills the job mid-way with nothing recorded.
            self.shutdown = Shutdown(policy.shutdown_grace, wait_for_job=True)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.heartbeat = Heartbeat(
            Registry(registry.connect(conn.redis_url, self.io_timeout), conn.queue, worker_id,
                     restore=restore),
            lease=self.lease, lock_ttl=self.lock_ttl, wake=self._wake)
        self.effects = EffectsThread(postgres_link(conn.database_url, self.io_timeout), worker_id)
        self.reaper = Reaper(self.registry, self.db, policy, worker_id, bugs)
        self.guard = memory_guard(policy.memory_limit_mb, worker_id, memory_mode)

    # -- the main loop ------------------------------------------------------------------
    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.shutdown.handle)
        if self.bugs.on("shutdown_drops_job"):
            # Origin: a worker with no SIGTERM handler (Python's default disposition ends the
            # process at once): every deploy, scale-down or spot reclaim drops the job in hand
            # and leaves it to a lease expiry (Kubernetes and ECS send SIGTERM first).
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, self.shutdown.handle)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        p = self.policy
        log(f"started: queue {self.conn.queue}, timeout {p.job_timeout:g} s, max tries "
            f"{p.max_tries}, lease {self.lease:g} s, memory {p.memory_limit_mb} MB by "
            f"{self.guard.kind}, bugs: {self.bugs}")
        try:
            persist("create tables", lambda: self.db.run(ledger.create_schema),
                    stop=lambda: self.shutdown.requested, sleep=self._pause)
            self.effects.start()
            if self.heartbeat_on:
                self.heartbeat.start()
            gc.freeze()  # forked children then share the parent's objects without copying
            self._signal_ready()
            self._loop()
        except Abandoned:
            pass
        finally:
            self.heartbeat.stop()
            self.effects.stop(timeout=self.io_timeout + 1)
            self.guard.close()
            self.db.reset()
            log("stopped")
        return 0

    def _loop(self) -> None:
        failures, next_reap = 0, 0.0
        while not self.shutdown.requested:
            if self.stalled:
                self._idle_forever()
                return
            if time.monotonic() >= next_reap:
                next_reap = time.monotonic() + self.lease / 4
                self._reap()
            asked = time.monotonic()  # the lease runs from no earlier than this
            try:
                fetched = self.registry.fetch(
                    lease=self.fetch_lease, lock_ttl=self.lock_ttl,
                    lock_retry=max(0.05, self.policy.backoff_base), dedupe=self.dedupe)
            except LINK_ERRORS as exc:
                failures += 1
                delay = retry_delay(failures)
                log(f"fetch: link down ({describe(exc)}); retry {failures} in {delay:.2f} s")
                self._pause(delay)
                self._consumer_link_lost()
                continue
            except Exception:  # never stop consuming; say why and go on
                log(f"fetch failed:\n{traceback.format_exc()}")
                self._pause(1.0)
                continue
            if failures:
                log(f"fetch: link back after {failures} failure(s)")
                failures = 0
            if isinstance(fetched, Fetched):
                try:
                    self._attempt(fetched, asked)
                except Exception:  # its lease expires and a reaper hands it back
                    log(f"{fetched.job_id}: attempt {fetched.attempt} broke:\n"
                        f"{traceback.format_exc()}")
                    self._pause(1.0)
            elif fetched.kind == "empty":
                self._pause(POLL_INTERVAL)
            elif fetched.kind == "duplicate":
                log(f"{fetched.job_id}: duplicate dispatch dropped (job is {fetched.detail})")
            elif fetched.kind == "locked":
                log(f"{fetched.job_id}: unique key held by {fetched.detail}; rescheduled")
            else:
                log(f"malformed payload moved to {self.registry.keys.poison}: {fetched.detail}")

    def _signal_ready(self) -> None:
        """Say that this process takes jobs from now on: its ``chaos_ready`` row, over the
        harness's unfaulted report link (the harness waits for it before striking)."""
        report = postgres_link(self.report_url, self.io_timeout)
        try:
            persist("signal ready", lambda: report.run(
                        lambda c: ledger.mark_ready(c, self.worker_id, os.getpid())),
                    stop=lambda: self.shutdown.requested, sleep=self._pause)
        finally:
            report.reset()

    def _consumer_link_lost(self) -> None:
        """The consumer's Redis connection failed (fetching or settling)."""
        if self.bugs.on("exit_on_link_error"):
            # Origin: workers whose main loop lets a broker connection error escape and exit,
            # leaving recovery to their supervisor (RQ workers quitting on a Redis
            # ConnectionError or timeout, rq/rq#998, #1968; Resque workers, resque/resque#37;
            # arq after a Redis restart, python-arq/arq#498): each exit drops the job in hand
            # until its lease expires, and the worker crash-loops while the link is down.
            log("consumer: link error; exiting")
            raise SystemExit(1)
        if self.bugs.on("stop_consuming_after_link_error"):
            # Origin: Celery workers that reconnect to Redis after a lost connection and never
            # consume again while the process stays up (celery/celery#8030, #8091, #10205):
            # liveness checks pass, the queue grows.
            self.stalled = True

    def _idle_forever(self) -> None:
        """The stalled consumer of ``stop_consuming_after_link_error``: alive, answering
        SIGTERM, fetching nothing."""
        log("consumer: link back; consumer restarted")  # what such a worker says; then idles
        while not self.shutdown.requested:
            self._pause(POLL_INTERVAL)

    def _reap(self) -> None:
        if self.bugs.on("no_reaper"):
            # Origin: a reliable queue without its janitor: jobs in a processing list (RQ's
            # started registry) stay there when their worker dies (background/003).
            return
        try:
            self.reaper.run_once()
        except Exception as exc:  # the next pass tries again
            log(f"reaper: {describe(exc)}; trying again later")

    # -- one attempt --------------------------------------------------------------------
    def _attempt(self, job: Fetched, asked: float) -> None:
        tracked = self.heartbeat_on and self.fetch_lease > 0
        if tracked:
            self.heartbeat.track(job, since=asked)
        try:
            self._run_attempt(job)
        except Abandoned as exc:
            log(f"{job.job_id}: gave up on {exc}; its lease will expire and a reaper will "
                "hand it back")
        finally:
            if tracked:
                self.heartbeat.untrack()

    def _run_attempt(self, job: Fetched) -> None:
        name, n = job.job_id, job.attempt
        start = self._start(job)
        if start.finished is not None:
            log(f"{name}: duplicate dispatch of a job already {start.finished}: dropped")
            self._settle(job, "done", Outcome("completed"))
            return
        if start.ended is not None:
            log(f"{name}: attempt {n} was already ended ({start.ended}) by a reaper")
            self._stop(job, time.time())
            return
        log(f"{name}: attempt {n} started")
        try:
            envelope = Job.from_json(job.payload)
        except (ValueError, KeyError, TypeError) as exc:  # it can never run: dead at once
            self._finish(job, Outcome("dead", "exception", f"invalid envelope: {exc}"),
                         stopped=time.time())
            return
        if self.bugs.on("status_before_effects"):
            # Origin: jobs that mark the order "completed" before sending the confirmation
            # (the "processed" lie, background/000): the failure that follows is never seen.
            self._record(job, Outcome("completed"))
        channel = Channel.open(name, n, start.attempt_id)
        steps = StepRunner(job_id=name, attempt=n, attempt_id=start.attempt_id,
                           worker=self.worker_id, effects=channel,
                           smtp_host=self.conn.smtp_host, smtp_port=self.conn.smtp_port,
                           io_timeout=self.io_timeout, bugs=self.bugs)
        try:
            result = run_in_child(steps, envelope.steps, timeout=self.job_timeout,
                                  guard=self.guard, wake_fd=self.wake_r,
                                  interrupt=self._interrupt,
                                  forked=lambda: self.effects.serve(channel))
        except ForkFailed as exc:  # out of processes or memory: the job never started
            channel.close()
            result = Result("killed", str(exc))
        stopped = time.time()  # the child is reaped: the attempt really stopped
        outcome = self._outcome(n, result)
        if outcome is None:
            log(f"{name}: attempt {n} {result.kind} ({result.detail}); nothing recorded")
            self._stop(job, stopped)
            self._settle(job, "done", Outcome("completed"))
            return
        self._finish(job, outcome, stopped=stopped)

    def _outcome(self, attempt: int, result: Result) -> Outcome | None:
        if result.kind == "ok":
            return Outcome("completed")
        if result.kind == "timeout" and self.bugs.on("timeout_skips_failed_hook"):
            # Origin: Laravel workers killed on $timeout do not call failed() (background/000);
            # the job disappears without a trace.
            return None
        if result.kind == "memory" and self.bugs.on("memory_kill_unrecorded"):
            # Origin: PHP dying at memory_limit, or the OOM killer: "no exception, no failed
            # handler, nothing" (background/000).
            return None
        return retries.failed(self.policy, attempt, FAILURE_REASONS[result.kind], result.detail,
                              self.bugs)

    def _start(self, job: Fetched) -> ledger.Start:
        dedupe = self.dedupe
        return self._persist(f"{job.job_id}: record attempt {job.attempt}",
                             lambda c: ledger.start_attempt(c, job.job_id, job.attempt,
                                                            self.worker_id, dedupe=dedupe),
                             stop=lambda: self.shutdown.requested or self._interrupt() is not None)

    def _record(self, job: Fetched, outcome: Outcome, stopped: float | None = None) -> Outcome:
        def end(c: Any) -> Outcome:
            if not self.fenced:  # the zombie_worker bug
                return ledger.end_attempt_unfenced(c, job.job_id, job.attempt, self.worker_id,
                                                   outcome)
            return ledger.end_attempt(c, job.job_id, job.attempt, self.worker_id, outcome,
                                      stopped=stopped)

        return self._persist(f"{job.job_id}: record outcome of attempt {job.attempt}", end,
                             stop=self.shutdown.bookkeeping_over)

    def _stop(self, job: Fetched, stopped: float) -> None:
        """Record when the attempt's process ended, when there is no outcome to record."""
        self._persist(f"{job.job_id}: record the stop of attempt {job.attempt}",
                      lambda c: ledger.stop_attempt(c, job.job_id, job.attempt, self.worker_id,
                                                    stopped),
                      stop=self.shutdown.bookkeeping_over)

    def _finish(self, job: Fetched, outcome: Outcome, stopped: float | None = None) -> None:
        """Record the outcome (and ``stopped``, when the attempt's process ended), then settle;
        an outcome a reaper recorded first stands, and the stop is recorded all the same."""
        stands = self._record(job, outcome, stopped)
        settled = self._settle(job, DISPOSITION[stands.status], stands)
        what = stands.status + (f" ({stands.reason}: {stands.detail})" if stands.reason else "")
        if settled:
            log(f"{job.job_id}: attempt {job.attempt} {what}")
        else:
            log(f"{job.job_id}: attempt {job.attempt} {what}; the job was no longer ours in "
                "Redis (its lease was reclaimed, or an earlier try settled it)")

    def _settle(self, job: Fetched, disposition: registry.Disposition, stands: Outcome) -> bool:
        def settle() -> bool:
            try:
                return self.registry.settle(
                    job.job_id, job.token, disposition, payload=job.payload, attempt=job.attempt,
                    delay=retries.delay(self.policy, job.attempt, self.bugs),
                    dead={"reason": stands.reason, "detail": stands.detail,
                          "attempt": job.attempt, "payload": job.payload},
                    lock_key=job.lock_key, lock_holder=job.lock_holder, force=not self.fenced)
            except REDIS_ERRORS:
                self._consumer_link_lost()
                raise

        return persist(f"{job.job_id}: settle attempt {job.attempt}", settle,
                       stop=self.shutdown.bookkeeping_over, sleep=self._pause)

    def _persist(self, what: str, operation: Callable[[Any], R], stop: Callable[[], bool]) -> R:
        return persist(what, lambda: self.db.run(operation), stop=stop, sleep=self._pause)

    def _interrupt(self) -> str | None:
        lost = self.heartbeat.lost() if self.fenced else None
        return lost or self.shutdown.interrupt_reason()

    # -- waiting ------------------------------------------------------------------------
    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # a full pipe: already awake
            os.write(self.wake_w, b"!")

    def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once for a signal or the heartbeat."""
        ready, _, _ = select.select([self.wake_r], [], [], seconds)
        if ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(self.wake_r, 4096):
                    pass


def main(bugs: Bugs) -> int:
    try:
        conn, policy, worker_id = read_env(os.environ)
    except (KeyError, ValueError) as exc:
        print(f"reference_worker: missing or bad contract env var: {exc} (see docs/contract.md)",
              file=sys.stderr)
        return 2
    set_worker(worker_id)
    return Worker(conn, policy, worker_id, bugs, os.environ.get(ENV_MEMORY, "auto"),
                  report_database_url(os.environ)).run()
