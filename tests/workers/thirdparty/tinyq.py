"""tinyq: a small Redis job queue written the way popular libraries are (RQ, kombu), standing
in for a third-party library the harness did not write. Nothing in it knows about jobchaos;
the shim (``worker.py``) plugs the kit into its hooks.

What it does, on purpose, as its models do by default:

- its own structures under ``<name>:tinyq:``: ``jobs`` (a list of messages), ``started`` (a
  hash message id -> {worker, message}: what is in progress, like RQ's StartedJobRegistry or
  kombu's unacked hash) and ``failed`` (a hash job id -> reason);
- the fetch moves a message from ``jobs`` into ``started`` in one script (nothing is lost);
- each job runs in a forked "work horse" that calls ``os.setpgrp()`` (as RQ's does);
- one try: a job that raises, crashes or times out is failed, never retried;
- no leases, no locks, no memory limit of its own;
- redelivery without counting: at start, a worker puts back every message ``started`` under
  its own name (its previous process died) with the attempt number it had;
- it takes a second to start consuming (:data:`STARTUP`);
- a Redis error in the main process is not handled: it propagates and the process exits;
- SIGTERM is a warm shutdown: no new job, the current one may finish within the grace, then
  its horse is killed and the job failed.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import redis

STARTUP = 1.0  # seconds between the process start and the first fetch
POLL = 0.05  # seconds between two fetches of an empty queue
REAP_POLL = 0.01

# Move the oldest message into ``started`` under this worker (KEYS: jobs, started).
FETCH = """
local raw = redis.call('RPOP', KEYS[1])
if not raw then return nil end
local msg = cjson.decode(raw)
redis.call('HSET', KEYS[2], msg['mid'], cjson.encode({worker = ARGV[1], message = raw}))
return raw
"""
# Put back every message ``started`` under this worker, unchanged (KEYS: jobs, started).
REQUEUE = """
local n = 0
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local entry = cjson.decode(all[i + 1])
  if entry['worker'] == ARGV[1] then
    redis.call('RPUSH', KEYS[1], entry['message'])
    redis.call('HDEL', KEYS[2], all[i])
    n = n + 1
  end
end
return n
"""


@dataclass(frozen=True, slots=True)
class Message:
    """One enqueued job: its message id, the job's id and payload, its attempt number."""

    mid: str
    job_id: str
    payload: str
    attempt: int = 1

    def to_json(self) -> str:
        return json.dumps({"mid": self.mid, "job_id": self.job_id, "payload": self.payload,
                           "attempt": self.attempt})

    @classmethod
    def from_json(cls, raw: str | bytes) -> Message:
        body = json.loads(raw)
        return cls(body["mid"], body["job_id"], body["payload"], int(body["attempt"]))


class Queue:
    """A named queue on one Redis."""

    def __init__(self, name: str, connection: redis.Redis) -> None:
        self.name = name
        self.redis = connection
        self.jobs_key = f"{name}:tinyq:jobs"
        self.started_key = f"{name}:tinyq:started"
        self.failed_key = f"{name}:tinyq:failed"

    def enqueue(self, job_id: str, payload: str) -> Message:
        msg = Message(uuid.uuid4().hex, job_id, payload)
        self.redis.lpush(self.jobs_key, msg.to_json())
        return msg

    def queued(self) -> list[Message]:
        """The waiting messages, in the order they will run."""
        return [Message.from_json(raw) for raw in reversed(self.redis.lrange(self.jobs_key, 0, -1))]

    def started(self) -> list[tuple[Message, str]]:
        """The messages in progress, with the worker that took each."""
        out = []
        for raw in self.redis.hvals(self.started_key):
            entry = json.loads(raw)
            out.append((Message.from_json(entry["message"]), str(entry["worker"])))
        return out

    def failed(self) -> dict[str, str]:
        """Job id -> why it failed."""
        return {k.decode(): v.decode() for k, v in self.redis.hgetall(self.failed_key).items()}


class Handler(Protocol):
    """What a worker calls for each job: the application's (here: the shim's) side."""

    def ready(self) -> None:
        """The worker takes jobs from now on."""

    def started(self, message: Message) -> Any:
        """In the main process, before the horse forks; returns the job's context."""

    def perform(self, context: Any) -> None:
        """In the horse: run the job (raise on failure) and record its result."""

    def failed(self, context: Any, reason: str, detail: str) -> None:
        """In the main process, after the horse ended badly (``reason``: exception, timeout
        or killed)."""

    def ended(self, context: Any) -> None:
        """In the main process, once the horse was reaped."""


class Worker:
    """Takes messages from ``queue`` one at a time and runs each in a forked horse."""

    def __init__(self, queue: Queue, name: str, handler: Handler, *, job_timeout: float,
                 shutdown_grace: float, log: Callable[[str], None] = print) -> None:
        self.queue = queue
        self.name = name
        self.handler = handler
        self.job_timeout = job_timeout
        self.shutdown_grace = shutdown_grace
        self.log = log
        self._fetch = queue.redis.register_script(FETCH)
        self._requeue = queue.redis.register_script(REQUEUE)
        self._stop_at: float | None = None

    def work(self) -> None:
        """Start, then take jobs until SIGTERM or SIGINT. Redis errors propagate."""
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        time.sleep(STARTUP)
        n = self._requeue(keys=[self.queue.jobs_key, self.queue.started_key], args=[self.name])
        if n:
            self.log(f"put back {n} job(s) this worker had started before it died")
        self.handler.ready()
        while self._stop_at is None:
            raw = self._fetch(keys=[self.queue.jobs_key, self.queue.started_key],
                              args=[self.name])
            if raw is None:
                time.sleep(POLL)
                continue
            self.execute(Message.from_json(raw))
        self.log("warm shutdown: done")

    def execute(self, message: Message) -> None:
        context = self.handler.started(message)
        pid = os.fork()
        if pid == 0:  # the horse
            os.setpgrp()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 0
            try:
                self.handler.perform(context)
            except BaseException:
                code = 1
            os._exit(code)
        status, reason = self._reap(pid)
        if reason is not None:
            self.handler.failed(context, reason, status)
        self.handler.ended(context)
        pipe = self.queue.redis.pipeline()
        if reason is not None:
            pipe.hset(self.queue.failed_key, message.job_id, reason)
        pipe.hdel(self.queue.started_key, message.mid)
        pipe.execute()

    def _reap(self, pid: int) -> tuple[str, str | None]:
        """Wait for the horse; kill it at the job timeout or past a shutdown's grace. Returns
        how it ended, and why it failed (None: it succeeded)."""
        deadline = time.monotonic() + self.job_timeout
        killed_for: str | None = None
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            now = time.monotonic()
            if killed_for is None and now >= deadline:
                killed_for = "timeout"
            elif killed_for is None and self._stop_at is not None and now >= self._stop_at:
                killed_for = "killed"
            if killed_for is not None and not done:
                os.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
                break
            time.sleep(REAP_POLL)
        if killed_for is not None:
            return f"killed by the worker ({killed_for})", killed_for
        if os.WIFSIGNALED(status):
            return f"horse killed by signal {os.WTERMSIG(status)}", "killed"
        code = os.WEXITSTATUS(status)
        if code == 0:
            return "exit code 0", None
        return f"horse exited with code {code}", "exception" if code == 1 else "killed"

    def _request_stop(self, signum: int, frame: object) -> None:
        if self._stop_at is None:
            self.log(f"signal {signum}: warm shutdown (the current job may finish within "
                     f"{self.shutdown_grace:g} s)")
            self._stop_at = time.monotonic() + self.shutdown_grace
