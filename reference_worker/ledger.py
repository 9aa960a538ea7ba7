"""The PostgreSQL side: the contract tables the worker reports into, and its own two tables.

``reference_worker_attempts`` is the worker's ledger, one row per attempt, keyed by
(job, attempt), holding the attempt's identity (``attempt_id``: the id of its
``chaos_attempts`` row, drawn when the attempt starts). Recording an outcome is one statement
that ends the ledger row *and* writes the ``chaos_outcomes`` row with that identity, and only if
that attempt has not ended yet, so it is idempotent: the reaper (which finds the identity in the
ledger) and a worker that crashed right after recording can both try, and the first one wins.
The caller then acts on the outcome that won. The worker that ran the attempt also records
when its child was reaped (``chaos_attempts.stopped_at``); a reaper never does, since it cannot
know whether the attempt is still running elsewhere.

``reference_worker_dedupe`` makes ``db_write`` exactly-once: the effect row and its dedupe key
are inserted by one statement (one transaction), so a retry, a duplicate dispatch or a second
worker finds the key and writes nothing.

``reference_worker_emails`` records each email the SMTP server accepted, right after it did,
so that a retry skips the send. An email cannot be sent and recorded in one transaction: a
send whose record was never written (the attempt died in between, or the database link was
down) is sent again, which is all the ``once_unless_indeterminate`` guarantee allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

SCHEMA_LOCK = 0x7265665F776B  # advisory lock id: two workers starting at once create once
SCHEMA = """
CREATE TABLE IF NOT EXISTS reference_worker_attempts (
    job_id  text NOT NULL,
    attempt integer NOT NULL,
    worker  text NOT NULL,
    status  text,          -- NULL while the attempt runs; then completed / retrying / dead
    reason  text,
    attempt_id bigint,     -- chaos_attempts.id of the attempt
    PRIMARY KEY (job_id, attempt)
);
ALTER TABLE reference_worker_attempts ADD COLUMN IF NOT EXISTS attempt_id bigint;
CREATE TABLE IF NOT EXISTS reference_worker_dedupe (
    job_id  text NOT NULL,
    step    integer NOT NULL,
    PRIMARY KEY (job_id, step)
);
CREATE TABLE IF NOT EXISTS reference_worker_emails (
    job_id  text NOT NULL,
    step    integer NOT NULL,
    attempt integer NOT NULL,
    worker  text NOT NULL,
    PRIMARY KEY (job_id, step)
);
"""

# Start an attempt unless the job already finished (a duplicate dispatch, also after Redis
# lost its memory). Retrying this statement after a lost reply does not add a second row. The
# attempt's identity is drawn from chaos_attempts' own sequence, so that the ledger and the
# attempt row get it in one statement.
START_ATTEMPT = """
WITH finished AS (
    SELECT status FROM reference_worker_attempts
    WHERE job_id = %(job)s AND status IN ('completed', 'dead') AND %(dedupe)s
    LIMIT 1),
claim AS (
    INSERT INTO reference_worker_attempts (job_id, attempt, worker, attempt_id)
    SELECT %(job)s, %(attempt)s, %(worker)s,
           nextval(pg_get_serial_sequence('chaos_attempts', 'id'))
    WHERE NOT EXISTS (SELECT 1 FROM finished)
    ON CONFLICT (job_id, attempt) DO NOTHING
    RETURNING attempt_id),
logged AS (
    INSERT INTO chaos_attempts (id, job_id, attempt, worker)
    SELECT attempt_id, %(job)s, %(attempt)s, %(worker)s FROM claim)
SELECT (SELECT status FROM finished),
       (SELECT status FROM reference_worker_attempts
        WHERE job_id = %(job)s AND attempt = %(attempt)s),
       coalesce((SELECT attempt_id FROM claim),
                (SELECT attempt_id FROM reference_worker_attempts
                 WHERE job_id = %(job)s AND attempt = %(attempt)s))
"""

# The identity of attempt (job, attempt), from the ledger.
IDENTITY = """(SELECT attempt_id FROM reference_worker_attempts
              WHERE job_id = %(job)s AND attempt = %(attempt)s)"""

END_ATTEMPT = f"""
WITH stopped AS (
    UPDATE chaos_attempts SET stopped_at = to_timestamp(%(stopped)s::float8)
    WHERE id = {IDENTITY} AND %(stopped)s::float8 IS NOT NULL AND stopped_at IS NULL),
ended AS (
    INSERT INTO reference_worker_attempts AS a (job_id, attempt, worker, status, reason)
    VALUES (%(job)s, %(attempt)s, %(worker)s, %(status)s, %(reason)s)
    ON CONFLICT (job_id, attempt) DO UPDATE SET status = EXCLUDED.status, reason = EXCLUDED.reason
    WHERE a.status IS NULL
    RETURNING a.status, a.reason, a.attempt_id),
logged AS (
    INSERT INTO chaos_outcomes (job_id, attempt, worker, attempt_id, status, reason, detail)
    SELECT %(job)s, %(attempt)s, %(worker)s, attempt_id, status, reason, %(detail)s FROM ended)
SELECT status, reason FROM ended
UNION ALL
SELECT status, reason FROM reference_worker_attempts
WHERE job_id = %(job)s AND attempt = %(attempt)s AND status IS NOT NULL
"""

# The zombie_worker bug switch: the outcome row written whatever the ledger says.
END_UNFENCED = f"""
INSERT INTO chaos_outcomes (job_id, attempt, worker, attempt_id, status, reason, detail)
VALUES (%(job)s, %(attempt)s, %(worker)s, {IDENTITY}, %(status)s, %(reason)s, %(detail)s)
"""

# The worker that ran an attempt says when its process ended (Unix seconds, its own clock).
STOP_ATTEMPT = f"""
UPDATE chaos_attempts SET stopped_at = to_timestamp(%(stopped)s::float8)
WHERE id = {IDENTITY} AND stopped_at IS NULL
"""

ENDED = "SELECT status, reason FROM reference_worker_attempts WHERE job_id = %s AND attempt = %s"

EFFECT_ONCE = """
WITH once AS (
    INSERT INTO reference_worker_dedupe (job_id, step) VALUES (%(job)s, %(step)s)
    ON CONFLICT DO NOTHING
    RETURNING 1)
INSERT INTO chaos_effects (job_id, step, attempt, worker, attempt_id)
SELECT %(job)s, %(step)s, %(attempt)s, %(worker)s, %(attempt_id)s FROM once
"""

EFFECT_UNGUARDED = """
INSERT INTO chaos_effects (job_id, step, attempt, worker, attempt_id)
VALUES (%(job)s, %(step)s, %(attempt)s, %(worker)s, %(attempt_id)s)
"""


EMAIL_SENT = "SELECT 1 FROM reference_worker_emails WHERE job_id = %s AND step = %s"

RECORD_EMAIL = """
INSERT INTO reference_worker_emails (job_id, step, attempt, worker)
VALUES (%(job)s, %(step)s, %(attempt)s, %(worker)s)
ON CONFLICT DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # completed | retrying | dead
    reason: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Start:
    """What the ledger said when an attempt asked to start."""

    finished: str | None  # the job already completed or died: do not run it again
    ended: str | None  # this very attempt was already ended (e.g. reclaimed by a reaper)
    attempt_id: int | None = None  # its identity (the id of its chaos_attempts row)

    @property
    def go(self) -> bool:
        return self.finished is None and self.ended is None


def connect(url: str, timeout: float) -> psycopg.Connection[Any]:
    """An autocommit connection that notices a dead link within a few seconds."""
    seconds = max(1, round(timeout))
    return psycopg.connect(url, autocommit=True, connect_timeout=seconds, prepare_threshold=None,
                           keepalives=1, keepalives_idle=1, keepalives_interval=1,
                           keepalives_count=max(1, seconds), tcp_user_timeout=seconds * 1000)


def create_schema(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        conn.execute(SCHEMA)


def start_attempt(conn: psycopg.Connection[Any], job: str, attempt: int, worker: str, *,
                  dedupe: bool = True) -> Start:
    row = conn.execute(START_ATTEMPT, {"job": job, "attempt": attempt, "worker": worker,
                                       "dedupe": dedupe}).fetchone()
    assert row is not None
    return Start(finished=row[0], ended=row[1], attempt_id=row[2])


def end_attempt(conn: psycopg.Connection[Any], job: str, attempt: int, worker: str,
                outcome: Outcome, *, stopped: float | None = None) -> Outcome:
    """Record ``outcome`` unless the attempt already has one; return the one that stands.
    ``stopped`` (Unix seconds): when the attempt's process ended, given only by the worker
    that ran it (a reaper does not know); it is recorded even when an earlier outcome stands."""
    params = {"job": job, "attempt": attempt, "worker": worker, "status": outcome.status,
              "reason": outcome.reason, "detail": outcome.detail, "stopped": stopped}
    row = conn.execute(END_ATTEMPT, params).fetchone()
    if row is None:  # another session ended it concurrently: read what it wrote
        row = conn.execute(ENDED, (job, attempt)).fetchone()
    if row is None or row[0] is None:
        raise RuntimeError(f"outcome of {job} attempt {attempt} was not recorded")
    if row[0] == outcome.status and row[1] == outcome.reason:
        return outcome
    return Outcome(row[0], row[1], "recorded earlier")


def end_attempt_unfenced(conn: psycopg.Connection[Any], job: str, attempt: int, worker: str,
                         outcome: Outcome) -> Outcome:
    """Write ``outcome``'s row without asking whether the attempt already ended (wrong: only
    the ``zombie_worker`` bug switch calls it)."""
    conn.execute(END_UNFENCED, {"job": job, "attempt": attempt, "worker": worker,
                                "status": outcome.status, "reason": outcome.reason,
                                "detail": outcome.detail})
    return outcome


def stop_attempt(conn: psycopg.Connection[Any], job: str, attempt: int, worker: str,
                 stopped: float) -> None:
    """Record when an attempt's process ended, for an attempt with no outcome to record."""
    conn.execute(STOP_ATTEMPT, {"job": job, "attempt": attempt, "worker": worker,
                                "stopped": stopped})


def write_effect(conn: psycopg.Connection[Any], job: str, step: int, attempt: int, worker: str,
                 *, attempt_id: int | None = None, idempotent: bool = True) -> bool:
    """The ``db_write`` side effect (made by attempt ``attempt_id``); False when its dedupe key
    says it already happened."""
    params = {"job": job, "step": step, "attempt": attempt, "worker": worker,
              "attempt_id": attempt_id}
    cur = conn.execute(EFFECT_ONCE if idempotent else EFFECT_UNGUARDED, params)
    return cur.rowcount == 1


def email_sent(conn: psycopg.Connection[Any], job: str, step: int) -> bool:
    """Whether the email of ``job``'s step ``step`` was recorded as accepted by the server."""
    return conn.execute(EMAIL_SENT, (job, step)).fetchone() is not None


def record_email(conn: psycopg.Connection[Any], job: str, step: int, attempt: int,
                 worker: str) -> None:
    """Record that the server accepted the email of ``job``'s step ``step`` (idempotent)."""
    conn.execute(RECORD_EMAIL, {"job": job, "step": step, "attempt": attempt, "worker": worker})


def mark_ready(conn: psycopg.Connection[Any], worker: str, pid: int) -> None:
    """The ready signal (``chaos_ready``): this process of ``worker`` takes jobs from now on."""
    conn.execute("INSERT INTO chaos_ready (worker, pid) VALUES (%s, %s)", (worker, pid))
