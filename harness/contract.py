"""The worker contract in code: env vars, the chaos job envelope, the tables, the probe.

docs/contract.md is the prose version; this module is what the harness and the reference
worker both import, so the two cannot drift apart.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Final, Literal, get_args

# -- env vars the harness sets for every worker process (and the probe) ---------------------
ENV_REDIS_URL = "CHAOS_REDIS_URL"
ENV_DATABASE_URL = "CHAOS_DATABASE_URL"
ENV_SMTP_HOST = "CHAOS_SMTP_HOST"
ENV_SMTP_PORT = "CHAOS_SMTP_PORT"
ENV_QUEUE = "CHAOS_QUEUE"
ENV_WORKER_ID = "CHAOS_WORKER_ID"
ENV_JOB_TIMEOUT = "CHAOS_JOB_TIMEOUT"
ENV_MAX_TRIES = "CHAOS_MAX_TRIES"
ENV_BACKOFF_BASE = "CHAOS_BACKOFF_BASE"
ENV_BACKOFF_CAP = "CHAOS_BACKOFF_CAP"
ENV_LEASE = "CHAOS_LEASE"
ENV_LOCK_TTL = "CHAOS_LOCK_TTL"
ENV_MEMORY_LIMIT_MB = "CHAOS_MEMORY_LIMIT_MB"
ENV_SHUTDOWN_GRACE = "CHAOS_SHUTDOWN_GRACE"
# The harness's own, unfaulted link to the contract tables: for a shim's instrumentation
# (attempt, outcome and ready rows written from a library's hooks), never for the effects
# under test (``db_write`` goes over CHAOS_DATABASE_URL, the worker's own faulted link).
ENV_REPORT_DATABASE_URL = "CHAOS_REPORT_DATABASE_URL"


@dataclass(frozen=True, slots=True)
class Policy:
    """The policy knobs a worker is configured with (seconds unless named otherwise).

    Scenarios scale production values (minutes) down to seconds and derive every wait from
    these, never from fixed sleeps.
    """

    job_timeout: float = 2.0
    max_tries: int = 3  # attempts in all, the first included
    backoff_base: float = 0.2  # delay before retry n is min(cap, base * 2**(n-1)), with jitter
    backoff_cap: float = 2.0
    lease: float = 3.0  # must exceed job_timeout; renewed by a heartbeat every lease/3
    lock_ttl: float = 5.0  # bound on any uniqueness lock
    memory_limit_mb: int = 256  # per job
    shutdown_grace: float = 3.0

    def backoff(self, retry: int) -> float:
        """Nominal delay before retry number ``retry`` (1 = the first retry), without jitter."""
        return float(min(self.backoff_cap, self.backoff_base * 2.0 ** (retry - 1)))


# Jitter may only shorten a backoff delay, by at most this fraction: the wait before retry n
# lies in [(1 - BACKOFF_JITTER) * Policy.backoff(n), Policy.backoff(n)].
BACKOFF_JITTER = 0.1


@dataclass(frozen=True, slots=True)
class Connections:
    """Where a worker finds its services (through the fault proxy, in scenarios)."""

    redis_url: str
    database_url: str
    smtp_host: str
    smtp_port: int
    queue: str


def worker_env(conn: Connections, policy: Policy, worker_id: str, *,
               report_database_url: str | None = None) -> dict[str, str]:
    """The complete set of contract env vars for one worker process; ``report_database_url``
    is the direct (unfaulted) database URL for the worker's reports (default: its own)."""
    return {
        ENV_REPORT_DATABASE_URL: report_database_url or conn.database_url,
        ENV_REDIS_URL: conn.redis_url,
        ENV_DATABASE_URL: conn.database_url,
        ENV_SMTP_HOST: conn.smtp_host,
        ENV_SMTP_PORT: str(conn.smtp_port),
        ENV_QUEUE: conn.queue,
        ENV_WORKER_ID: worker_id,
        ENV_JOB_TIMEOUT: repr(policy.job_timeout),
        ENV_MAX_TRIES: str(policy.max_tries),
        ENV_BACKOFF_BASE: repr(policy.backoff_base),
        ENV_BACKOFF_CAP: repr(policy.backoff_cap),
        ENV_LEASE: repr(policy.lease),
        ENV_LOCK_TTL: repr(policy.lock_ttl),
        ENV_MEMORY_LIMIT_MB: str(policy.memory_limit_mb),
        ENV_SHUTDOWN_GRACE: repr(policy.shutdown_grace),
    }


def read_env(environ: Mapping[str, str]) -> tuple[Connections, Policy, str]:
    """Parse the contract env vars (what a Python worker does at start); missing -> KeyError."""
    conn = Connections(
        redis_url=environ[ENV_REDIS_URL],
        database_url=environ[ENV_DATABASE_URL],
        smtp_host=environ[ENV_SMTP_HOST],
        smtp_port=int(environ[ENV_SMTP_PORT]),
        queue=environ[ENV_QUEUE],
    )
    defaults = Policy()
    policy = Policy(
        job_timeout=float(environ.get(ENV_JOB_TIMEOUT, defaults.job_timeout)),
        max_tries=int(environ.get(ENV_MAX_TRIES, defaults.max_tries)),
        backoff_base=float(environ.get(ENV_BACKOFF_BASE, defaults.backoff_base)),
        backoff_cap=float(environ.get(ENV_BACKOFF_CAP, defaults.backoff_cap)),
        lease=float(environ.get(ENV_LEASE, defaults.lease)),
        lock_ttl=float(environ.get(ENV_LOCK_TTL, defaults.lock_ttl)),
        memory_limit_mb=int(environ.get(ENV_MEMORY_LIMIT_MB, defaults.memory_limit_mb)),
        shutdown_grace=float(environ.get(ENV_SHUTDOWN_GRACE, defaults.shutdown_grace)),
    )
    return conn, policy, environ.get(ENV_WORKER_ID, "worker")


def report_database_url(environ: Mapping[str, str]) -> str:
    """Where a worker writes its reports: ``CHAOS_REPORT_DATABASE_URL`` (direct), else its own
    ``CHAOS_DATABASE_URL``."""
    return environ.get(ENV_REPORT_DATABASE_URL) or environ[ENV_DATABASE_URL]


# -- the chaos job envelope ---------------------------------------------------------------
StepOp = Literal["sleep", "cpu", "alloc", "db_write", "email", "fail", "crash"]
STEP_OPS: tuple[str, ...] = ("sleep", "cpu", "alloc", "db_write", "email", "fail", "crash")


def sleep(seconds: float) -> dict[str, Any]:
    return {"op": "sleep", "seconds": seconds}


def cpu(seconds: float) -> dict[str, Any]:
    """Busy CPU for ``seconds`` (a job that does not yield)."""
    return {"op": "cpu", "seconds": seconds}


def alloc(mb: int, hold: float = 0.0) -> dict[str, Any]:
    """Allocate ``mb`` MiB and touch every page, then hold it ``hold`` seconds."""
    return {"op": "alloc", "mb": mb, "hold": hold}


def db_write() -> dict[str, Any]:
    """A side effect row that must exist exactly once per job and step."""
    return {"op": "db_write"}


def email() -> dict[str, Any]:
    """One message to the SMTP server tagged with job id and step (once, unless the earlier
    send was indeterminate)."""
    return {"op": "email"}


def fail(times: int | None = None) -> dict[str, Any]:
    """Raise on the first ``times`` attempts (None: on every attempt)."""
    return {"op": "fail", "times": times}


def crash(times: int = 1) -> dict[str, Any]:
    """Hard process exit (no cleanup, no hooks) on the first ``times`` attempts."""
    return {"op": "crash", "times": times}


def email_message(job_id: str, step: int, *, attempt: int, attempt_id: int | None,
                  sender: str) -> EmailMessage:
    """The message an ``email`` step sends: tagged ``X-Chaos-Job`` and ``X-Chaos-Step`` (what
    the harness attributes it by), ``X-Chaos-Attempt`` and, when known, ``X-Chaos-Attempt-Id``
    (which attempt sent it)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "sink@jobchaos.invalid"
    msg["Subject"] = f"chaos job {job_id} step {step}"
    msg["X-Chaos-Job"] = job_id
    msg["X-Chaos-Step"] = str(step)
    msg["X-Chaos-Attempt"] = str(attempt)
    if attempt_id is not None:
        msg["X-Chaos-Attempt-Id"] = str(attempt_id)
    msg.set_content(f"job {job_id}, step {step}, attempt {attempt}\n")
    return msg


@dataclass(frozen=True, slots=True)
class Job:
    """A chaos job: what the dispatcher puts on the queue."""

    id: str
    steps: tuple[Mapping[str, Any], ...]
    dispatched_at: float = field(default_factory=time.time, compare=False)
    unique_key: str | None = None

    def to_json(self) -> str:
        body: dict[str, Any] = {"id": self.id, "steps": list(self.steps),
                                "dispatched_at": self.dispatched_at}
        if self.unique_key is not None:
            body["unique_key"] = self.unique_key
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Job:
        body = json.loads(raw)
        steps = tuple(body["steps"])
        for i, step in enumerate(steps):
            if step.get("op") not in STEP_OPS:
                raise ValueError(f"job {body.get('id')!r} step {i}: unknown op {step.get('op')!r}")
        return cls(id=str(body["id"]), steps=steps, dispatched_at=float(body["dispatched_at"]),
                   unique_key=body.get("unique_key"))

    def step_indices(self, op: str) -> list[int]:
        return [i for i, s in enumerate(self.steps) if s["op"] == op]


def job(job_id: str, *steps: Mapping[str, Any], unique_key: str | None = None) -> Job:
    return Job(id=job_id, steps=tuple(steps), unique_key=unique_key)


# -- the vocabulary: one set of words for the tables, the probe, the history and the docs ----
OutcomeStatus = Literal["completed", "retrying", "dead"]  # how an attempt ended
TerminalStatus = Literal["completed", "dead"]  # the statuses that end a job
FailureReason = Literal["exception", "timeout", "killed", "memory", "lease_lost"]
JobState = Literal["queued", "scheduled", "leased", "dead"]  # where the probe finds a job

OUTCOME_STATUSES: Final[tuple[OutcomeStatus, ...]] = get_args(OutcomeStatus)
TERMINAL_STATUSES: Final[tuple[TerminalStatus, ...]] = get_args(TerminalStatus)
FAILURE_REASONS: Final[tuple[FailureReason, ...]] = get_args(FailureReason)
JOB_STATES: Final[tuple[JobState, ...]] = get_args(JobState)


def _sql_in(words: Iterable[str]) -> str:
    return ", ".join(f"'{w}'" for w in words)


# -- what the worker writes to PostgreSQL (the harness creates these tables) ----------------
SCHEMA_SQL = f"""
CREATE TABLE chaos_attempts (
    id         bigserial PRIMARY KEY,     -- the attempt's identity (attempt numbers may repeat)
    job_id     text NOT NULL,
    attempt    integer NOT NULL,          -- 1 for the first run
    worker     text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    stopped_at timestamptz                -- optional: when the attempt's process ended
);
CREATE TABLE chaos_effects (
    id         bigserial PRIMARY KEY,     -- no uniqueness on purpose: duplicates must show
    job_id     text NOT NULL,
    step       integer NOT NULL,
    attempt    integer NOT NULL,
    worker     text NOT NULL,
    attempt_id bigint,                    -- optional: chaos_attempts.id of the attempt
    at         timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE chaos_outcomes (
    id         bigserial PRIMARY KEY,
    job_id     text NOT NULL,
    attempt    integer NOT NULL,
    worker     text NOT NULL,
    attempt_id bigint,                    -- optional: chaos_attempts.id of the attempt
    status     text NOT NULL CHECK (status IN ({_sql_in(OUTCOME_STATUSES)})),
    reason     text CHECK (reason IN ({_sql_in(FAILURE_REASONS)})),
    detail     text,
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK ((status = 'completed') = (reason IS NULL))
);
CREATE TABLE chaos_ready (
    id         bigserial PRIMARY KEY,
    worker     text NOT NULL,             -- exactly CHAOS_WORKER_ID
    pid        integer,                   -- the process that is ready (optional)
    at         timestamptz NOT NULL DEFAULT clock_timestamp()
);                                        -- one row per worker process, once it consumes
CREATE INDEX chaos_effects_job ON chaos_effects (job_id);
CREATE INDEX chaos_outcomes_job ON chaos_outcomes (job_id);
"""


# -- the probe: what is still inside the worker's system ------------------------------------
@dataclass(frozen=True, slots=True)
class Lease:
    job_id: str
    worker: str
    expires_in: float  # seconds; negative when already expired


@dataclass(frozen=True, slots=True)
class Dead:
    job_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Lock:
    key: str
    ttl: float | None  # seconds left; None means it never expires
    holder: str | None


@dataclass(frozen=True, slots=True)
class ProbeState:
    """A probe's answer: ``python -m reference_worker.probe`` prints this as JSON."""

    queued: tuple[str, ...] = ()
    scheduled: tuple[str, ...] = ()
    leased: tuple[Lease, ...] = ()
    dead: tuple[Dead, ...] = ()
    locks: tuple[Lock, ...] = ()

    def to_json(self) -> str:
        return json.dumps({
            "queued": list(self.queued),
            "scheduled": list(self.scheduled),
            "leased": [{"job_id": x.job_id, "worker": x.worker, "expires_in": x.expires_in}
                       for x in self.leased],
            "dead": [{"job_id": x.job_id, "reason": x.reason} for x in self.dead],
            "locks": [{"key": x.key, "ttl": x.ttl, "holder": x.holder} for x in self.locks],
        })

    @classmethod
    def from_json(cls, raw: str | bytes) -> ProbeState:
        body = json.loads(raw)
        return cls(
            queued=tuple(body.get("queued", ())),
            scheduled=tuple(body.get("scheduled", ())),
            leased=tuple(Lease(x["job_id"], x["worker"], float(x["expires_in"]))
                         for x in body.get("leased", ())),
            dead=tuple(Dead(x["job_id"], x["reason"]) for x in body.get("dead", ())),
            locks=tuple(Lock(x["key"], None if x.get("ttl") is None else float(x["ttl"]),
                             x.get("holder")) for x in body.get("locks", ())),
        )


def dispatch(client: Any, queue: str, jobs: Iterable[Job]) -> list[str]:
    """The default dispatcher: LPUSH each envelope onto the Redis list named ``queue``.

    Workers consume from the right end, so jobs run in dispatch order. Returns the ids pushed.
    """
    ids = []
    pipe = client.pipeline(transaction=False)
    for j in jobs:
        pipe.lpush(queue, j.to_json())
        ids.append(j.id)
    pipe.execute()
    return ids
