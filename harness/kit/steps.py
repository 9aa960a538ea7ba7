"""The steps of a chaos job (docs/contract.md section 3), run synchronously in the calling
process: whatever process the library runs its jobs in.

``db_write`` goes over the worker's own connection (``CHAOS_DATABASE_URL``, faulted in
scenarios): it is the side effect under test. Exactly once per (job, step) is the worker's
duty, so there are two ways to run the effects, chosen by the shim (:data:`EffectMode`):

- ``plain``: every run of a step makes its effect again: a ``db_write`` inserts a row, an
  ``email`` sends. What a job with no idempotency of its own does; on a library that runs a
  job twice (a redelivery), the duplicate is a real finding.
- ``once``: a ``db_write`` inserts its row and a claim on (job, step) in one statement, so a
  second run inserts nothing; an ``email`` is skipped when an earlier run recorded it as
  accepted by the server (recorded right after acceptance, so a run that died in between
  makes the send indeterminate and a repeat allowed). What a job with an idempotency key does.
"""

from __future__ import annotations

import contextlib
import os
import smtplib
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

import psycopg

from harness.contract import email_message
from harness.kit.links import Connection

T = TypeVar("T")
EffectMode = Literal["plain", "once"]
EFFECT_MODES: tuple[EffectMode, ...] = ("plain", "once")
CRASH_EXIT_CODE = 70  # what a ``crash`` step exits with
PAGE = 4096

# The kit's own bookkeeping for ``once`` (created on first use in the test database).
KIT_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobchaos_kit_done (
    job_id text NOT NULL,
    step   integer NOT NULL,
    kind   text NOT NULL,           -- 'db_write' or 'email'
    PRIMARY KEY (job_id, step, kind)
)"""
INSERT_EFFECT = """
INSERT INTO chaos_effects (job_id, step, attempt, worker, attempt_id)
VALUES (%(job)s, %(step)s, %(attempt)s, %(worker)s, %(attempt_id)s)"""
INSERT_EFFECT_ONCE = """
WITH claim AS (
    INSERT INTO jobchaos_kit_done (job_id, step, kind) VALUES (%(job)s, %(step)s, 'db_write')
    ON CONFLICT DO NOTHING RETURNING 1)
INSERT INTO chaos_effects (job_id, step, attempt, worker, attempt_id)
SELECT %(job)s, %(step)s, %(attempt)s, %(worker)s, %(attempt_id)s FROM claim"""
EMAIL_SENT = "SELECT 1 FROM jobchaos_kit_done WHERE job_id = %s AND step = %s AND kind = 'email'"
RECORD_EMAIL = ("INSERT INTO jobchaos_kit_done (job_id, step, kind) VALUES (%s, %s, 'email') "
                "ON CONFLICT DO NOTHING")


class StepFailed(Exception):
    """A ``fail`` step: the transient error the contract describes."""


class LocalSteps:
    """The steps that need no connection (``sleep``, ``cpu``, ``alloc``, ``fail``, ``crash``),
    as every runner of the contract's steps runs them (the kit's and the reference worker's).
    ``fail`` and ``crash`` go by :attr:`nth`."""

    nth: int  # how many attempts of the job have run, this one included

    def step_sleep(self, index: int, step: Mapping[str, Any]) -> None:
        time.sleep(float(step["seconds"]))

    def step_cpu(self, index: int, step: Mapping[str, Any]) -> None:
        end = time.monotonic() + float(step["seconds"])
        while time.monotonic() < end:
            pass

    def step_alloc(self, index: int, step: Mapping[str, Any]) -> None:
        size = int(step["mb"]) * 1024 * 1024
        block = bytearray(size)
        block[::PAGE] = b"\x01" * len(range(0, size, PAGE))  # touch every page
        time.sleep(float(step.get("hold") or 0.0))
        del block

    def step_fail(self, index: int, step: Mapping[str, Any]) -> None:
        times = step.get("times")
        if times is None or self.nth <= int(times):
            raise StepFailed(f"step {index}: fail on attempt {self.nth} (times={times})")

    def step_crash(self, index: int, step: Mapping[str, Any]) -> None:
        if self.nth <= int(step.get("times", 1)):
            os._exit(CRASH_EXIT_CODE)


class Steps(LocalSteps):
    """Runs the steps of one attempt: ``nth`` decides ``fail`` and ``crash``, ``number`` and
    ``attempt_id`` go into the rows and headers."""

    def __init__(self, *, job_id: str, number: int, nth: int, attempt_id: int, worker: str,
                 database: Connection, smtp_host: str, smtp_port: int, io_timeout: float,
                 effects: EffectMode) -> None:
        if effects not in EFFECT_MODES:
            raise ValueError(f"effects must be one of {EFFECT_MODES}, not {effects!r}")
        self.job_id = job_id
        self.number = number
        self.nth = nth
        self.attempt_id = attempt_id
        self.worker = worker
        self.database = database
        self.smtp_host = smtp_host
        self.smtp_port = smtp_port
        self.io_timeout = io_timeout
        self.effects = effects
        self._smtp: smtplib.SMTP | None = None

    def run(self, steps: tuple[Mapping[str, Any], ...]) -> None:
        """Run ``steps`` in order; the first failure raises (a ``crash`` exits the process)."""
        try:
            for index, step in enumerate(steps):
                getattr(self, f"step_{step['op']}")(index, step)
        finally:
            if self._smtp is not None:
                with contextlib.suppress(smtplib.SMTPException, OSError):
                    self._smtp.quit()
                self._smtp = None

    def step_db_write(self, index: int, step: Mapping[str, Any]) -> None:
        params = {"job": self.job_id, "step": index, "attempt": self.number,
                  "worker": self.worker, "attempt_id": self.attempt_id}
        if self.effects == "plain":
            self.database.run(lambda conn: conn.execute(INSERT_EFFECT, params))
        else:
            self._with_kit_table(lambda conn: conn.execute(INSERT_EFFECT_ONCE, params))

    def step_email(self, index: int, step: Mapping[str, Any]) -> None:
        key = (self.job_id, index)
        if self.effects == "once" and self._with_kit_table(
                lambda conn: conn.execute(EMAIL_SENT, key).fetchone() is not None):
            return
        self._send(index)
        if self.effects == "once":
            self._with_kit_table(lambda conn: conn.execute(RECORD_EMAIL, key))

    def _send(self, index: int) -> None:
        msg = email_message(self.job_id, index, attempt=self.number, attempt_id=self.attempt_id,
                            sender=f"{self.worker}@jobchaos-kit.invalid")
        try:
            if self._smtp is None:
                self._smtp = smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=self.io_timeout)
            self._smtp.send_message(msg)
        except (smtplib.SMTPException, OSError):
            self._smtp = None
            raise

    def _with_kit_table(self, operation: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``operation`` on the worker's connection, creating the kit's table if missing."""
        try:
            return self.database.run(operation)
        except psycopg.errors.UndefinedTable:
            self.database.run(_create_kit_table)
            return self.database.run(operation)


def _create_kit_table(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('jobchaos_kit_done'))")
        conn.execute(KIT_SCHEMA)
