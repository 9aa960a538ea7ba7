"""What a shim reports: readiness, each attempt's start, its outcome and its end.

Every report goes over ``CHAOS_REPORT_DATABASE_URL``, the harness's direct link, which no
fault strikes: the shim's own bookkeeping must not create the anomalies it is there to reveal.
Only the job's ``db_write`` steps use the worker's own, faulted ``CHAOS_DATABASE_URL``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.contract import (
    FAILURE_REASONS,
    Connections,
    FailureReason,
    Job,
    OutcomeStatus,
    Policy,
    read_env,
    report_database_url,
)
from harness.errors import JobchaosError
from harness.kit.links import Connection
from harness.kit.steps import EFFECT_MODES, EffectMode, Steps

# Counts the job's earlier attempt rows in the same statement (the subquery sees the table as
# it was before this insert), so ``nth`` costs no extra round trip.
BEGIN = """
INSERT INTO chaos_attempts (job_id, attempt, worker)
VALUES (%(job)s, COALESCE(%(attempt)s::integer,
                          (SELECT count(*)::integer + 1 FROM chaos_attempts WHERE job_id = %(job)s)),
        %(worker)s)
RETURNING id, attempt,
          (SELECT count(*)::integer + 1 FROM chaos_attempts WHERE job_id = %(job)s)"""
# First writer wins: an attempt has one outcome, whoever (the job process, the library's main
# process after the job process died) reports it first.
OUTCOME = """
INSERT INTO chaos_outcomes (job_id, attempt, worker, attempt_id, status, reason, detail)
SELECT %(job)s, %(attempt)s, %(worker)s, %(id)s, %(status)s, %(reason)s, %(detail)s
WHERE NOT EXISTS (SELECT 1 FROM chaos_outcomes WHERE attempt_id = %(id)s)"""
OUTCOME_OF = "SELECT status FROM chaos_outcomes WHERE attempt_id = %s ORDER BY id LIMIT 1"
STOPPED = "UPDATE chaos_attempts SET stopped_at = to_timestamp(%s) WHERE id = %s"
READY = "INSERT INTO chaos_ready (worker, pid) VALUES (%s, %s)"


class KitError(JobchaosError):
    """The kit cannot start: the contract's env vars are missing or malformed."""


@dataclass
class Kit:
    """The contract side of one worker process: its id, policy and connections (from the
    ``CHAOS_*`` env), and the reports it writes. Connections open on first use and are
    reopened in a forked child (see :mod:`harness.kit.links`)."""

    worker: str  # exactly CHAOS_WORKER_ID: every row carries it
    policy: Policy
    connections: Connections  # the worker's own (through the fault proxy in scenarios)
    report_url: str  # CHAOS_REPORT_DATABASE_URL: the harness's direct link
    effects: EffectMode = "plain"
    io_timeout: float = 5.0
    _report: Connection = field(init=False, repr=False)
    _database: Connection = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.effects not in EFFECT_MODES:
            raise KitError(f"effects must be one of {EFFECT_MODES}, not {self.effects!r}")
        self._report = Connection(self.report_url, self.io_timeout)
        self._database = Connection(self.connections.database_url, self.io_timeout)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, *,
                 effects: EffectMode = "plain") -> Kit:
        """The kit of the worker process the harness started with ``environ``; ``effects``
        says how the job's effects run (:mod:`harness.kit.steps`: ``plain`` or ``once``)."""
        try:
            conn, policy, worker = read_env(environ)
            report = report_database_url(environ)
        except KeyError as exc:
            raise KitError(f"the contract env var {exc.args[0]} is not set: the harness sets "
                           "every CHAOS_* variable for the worker and probe commands it runs; "
                           "to run one by hand, set them as docs/contract.md section 1 "
                           "lists") from None
        except ValueError as exc:
            raise KitError(f"a contract env var is malformed ({exc}): see docs/contract.md "
                           "section 1 for each variable's format") from None
        return cls(worker=worker, policy=policy, connections=conn, report_url=report,
                   effects=effects)

    def ready(self) -> None:
        """Say that this process consumes now: one ``chaos_ready`` row (worker, pid). Call
        it once the library takes jobs, not when the process starts."""
        self._report.patiently(lambda c: c.execute(READY, (self.worker, os.getpid())))

    def begin(self, job: Job | Mapping[str, Any] | str | bytes,
              attempt: int | None = None) -> Attempt:
        """Record that an attempt of ``job`` (a :class:`Job`, an envelope dict, or its JSON)
        starts now, in this worker; its ``chaos_attempts`` row and id.

        ``attempt`` is the library's own attempt number, written as is (it may repeat: a
        library that redelivers without counting says 1 again). Without it, the kit counts:
        the number of the job's attempt rows so far, plus one. Either way the ``fail`` and
        ``crash`` steps go by that count (:attr:`Attempt.nth`), as the contract says."""
        j = as_job(job)
        params = {"job": j.id, "attempt": attempt, "worker": self.worker}
        row = self._report.patiently(lambda c: c.execute(BEGIN, params).fetchone())
        assert row is not None
        return Attempt(self, j, id=int(row[0]), number=int(row[1]), nth=int(row[2]))

    def close(self) -> None:
        """Close the connections this process opened (a forked child's are its own)."""
        self._report.close()
        self._database.close()


@dataclass
class Attempt:
    """One attempt of one job: its row's ``id``, the ``number`` written in its rows, and
    ``nth``, the kit's count of the job's attempts with this one (what ``fail`` and
    ``crash`` go by). Usable in the process that began it and in a child forked after."""

    kit: Kit
    job: Job
    id: int
    number: int
    nth: int

    def run(self) -> None:
        """Run the job's steps here, in order: returns when all ran; raises on the first that
        failed (:class:`~harness.kit.steps.StepFailed` for a ``fail`` step, the link's error
        for a ``db_write`` or ``email`` that could not be made); a ``crash`` step ends this
        process at once with exit code 70 (``CRASH_EXIT_CODE``)."""
        k = self.kit
        Steps(job_id=self.job.id, number=self.number, nth=self.nth, attempt_id=self.id,
              worker=k.worker, database=k._database, smtp_host=k.connections.smtp_host,
              smtp_port=k.connections.smtp_port, io_timeout=k.io_timeout,
              effects=k.effects).run(self.job.steps)

    def completed(self) -> bool:
        """Record that the attempt completed; False if it already had an outcome."""
        return self._outcome("completed", None, None)

    def retrying(self, reason: FailureReason, detail: str | None = None) -> bool:
        """Record that the attempt failed and the job will run again; False if the attempt
        already had an outcome."""
        return self._outcome("retrying", reason, detail)

    def dead(self, reason: FailureReason, detail: str | None = None) -> bool:
        """Record that the attempt failed and the job will not run again (dead-lettered);
        False if the attempt already had an outcome."""
        return self._outcome("dead", reason, detail)

    def outcome(self) -> OutcomeStatus | None:
        """The attempt's recorded outcome, if any (e.g. reported by the job process)."""
        row = self.kit._report.patiently(lambda c: c.execute(OUTCOME_OF, (self.id,)).fetchone())
        return None if row is None else row[0]

    def stopped(self, at: float | None = None) -> None:
        """Record when the attempt's process ended (``at``, Unix seconds; default now): call
        it once the library saw the job process end, whatever the outcome."""
        when = time.time() if at is None else at
        self.kit._report.patiently(lambda c: c.execute(STOPPED, (when, self.id)))

    def _outcome(self, status: OutcomeStatus, reason: FailureReason | None,
                 detail: str | None) -> bool:
        if status != "completed" and reason not in FAILURE_REASONS:
            raise ValueError(f"reason {reason!r} is not one of {', '.join(FAILURE_REASONS)}")
        params = {"job": self.job.id, "attempt": self.number, "worker": self.kit.worker,
                  "id": self.id, "status": status, "reason": reason,
                  "detail": None if detail is None else detail[:2000]}
        cur = self.kit._report.patiently(lambda c: c.execute(OUTCOME, params))
        return cur.rowcount == 1


def as_job(job: Job | Mapping[str, Any] | str | bytes) -> Job:
    """``job`` as a :class:`Job`: an envelope's JSON or dict is parsed and its ops checked
    (``dispatched_at`` may be missing)."""
    if isinstance(job, Job):
        return job
    body = json.loads(job) if isinstance(job, str | bytes) else dict(job)
    if not isinstance(body, dict):
        raise ValueError(f"a chaos job envelope is a JSON object, not {body!r}")
    body.setdefault("dispatched_at", time.time())
    return Job.from_json(json.dumps(body))
