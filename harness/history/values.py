"""Values of ops, made by typed constructors: what the dispatcher sends and what the observer
sees. Statuses, reasons and job states are the contract's words (``harness.contract``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Literal, TypeAlias

from harness.contract import FailureReason, JobState, OutcomeStatus, TerminalStatus
from harness.history.ops import ATTEMPT, EFFECT, JSON, LIFE, LOCK, OUTCOME, PROBE, STATE, JobId

EffectKind: TypeAlias = Literal["db_write", "email"]
# An attempt's identity: the ``chaos_attempts.id`` of its row (or an id its worker supplies).
# Attempt numbers may repeat (a library that redelivers without counting); identities do not.
AttemptId: TypeAlias = int | str

__all__ = [
    "AttemptId",
    "EffectKind",
    "FailureReason",
    "JobState",
    "Observation",
    "OutcomeStatus",
    "TerminalStatus",
    "attempt_record",
    "dispatch_value",
    "effect",
    "effect_row",
    "job_state",
    "lock_held",
    "probe_status",
    "reported_outcome",
    "sink_message",
    "worker_life",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Observation:
    """What the observer saw: becomes an ``ok`` op of process ``observer`` when recorded."""

    f: str
    value: dict[str, JSON]


def _clean(**fields: JSON) -> dict[str, JSON]:
    return {k: v for k, v in fields.items() if v is not None}


def dispatch_value(job: JobId, steps: Sequence[Mapping[str, JSON]], unique: str | None = None
                   ) -> dict[str, JSON]:
    """The value of a ``dispatch`` invocation: the job id, its steps as in the envelope (each
    ``{"op": ..., ...}``, see docs/contract.md) and its uniqueness key."""
    return _clean(job=job, steps=[dict(s) for s in steps], unique=unique)


def effect(job: JobId, step: int, kind: EffectKind, *, ref: str | int | None = None,
           at: float | None = None, attempt: int | None = None,
           attempt_id: AttemptId | None = None) -> Observation:
    """One side effect of step ``step`` (0-based) of ``job``, observed by the harness;
    ``kind`` is the step's op; ``attempt`` the number and ``attempt_id`` the identity of the
    attempt that made it, when known."""
    return Observation(EFFECT, _clean(job=job, step=step, kind=kind, ref=ref, at=at,
                                      attempt=attempt, attempt_id=attempt_id))


def effect_row(job: JobId, step: int, *, ref: str | int | None = None, at: float | None = None,
               attempt_id: AttemptId | None = None) -> Observation:
    """A ``db_write`` effect row (``ref`` = row id, ``at`` = when the row was written,
    ``attempt_id`` = the row's, when the worker wrote one)."""
    return effect(job, step, "db_write", ref=ref, at=at, attempt_id=attempt_id)


def sink_message(job: JobId, step: int, *, ref: str | None = None, at: float | None = None,
                 attempt: int | None = None, attempt_id: AttemptId | None = None
                 ) -> Observation:
    """A message received by the SMTP sink (``ref`` = Message-ID, ``at`` = received,
    ``attempt`` = the attempt number it was tagged with, ``X-Chaos-Attempt``, and
    ``attempt_id`` the attempt's identity, ``X-Chaos-Attempt-Id``)."""
    return effect(job, step, "email", ref=ref, at=at, attempt=attempt, attempt_id=attempt_id)


def reported_outcome(job: JobId, status: OutcomeStatus, *, reason: FailureReason | None = None,
                     attempt: int | None = None, worker: str | None = None,
                     at: float | None = None, attempt_id: AttemptId | None = None
                     ) -> Observation:
    """An outcome row the worker reported (``completed``, or ``retrying`` / ``dead`` with its
    ``reason``): one per row, not one per job; only ``completed`` and ``dead`` end a job.
    ``attempt_id``: the attempt it ended (the row's, else the one the collector matched)."""
    return Observation(OUTCOME, _clean(job=job, status=status, reason=reason, attempt=attempt,
                                       worker=worker, at=at, attempt_id=attempt_id))


def attempt_record(job: JobId, *, at: float, ended: float | None = None,
                   status: OutcomeStatus | None = None, reason: FailureReason | None = None,
                   attempt: int | None = None, worker: str | None = None,
                   stopped: float | None = None, attempt_id: AttemptId | None = None
                   ) -> Observation:
    """One attempt to run ``job``: started ``at``; if an outcome row ended it, ``ended`` and
    that row's ``status`` (``completed``, ``retrying``, ``dead``) and failure ``reason``. An
    attempt whose process died before writing one has none of them. ``stopped``: when the
    attempt's process really ended, as its worker recorded it (None: not known; a reaper's
    outcome row may be written while the attempt still runs). ``attempt_id``: its identity
    (attempts are told apart by it; ``attempt``, the number, may repeat)."""
    return Observation(ATTEMPT, _clean(job=job, attempt=attempt, attempt_id=attempt_id,
                                       worker=worker, at=at, ended=ended, status=status,
                                       reason=reason, stopped=stopped))


def probe_status(available: bool, reason: str | None = None) -> Observation:
    """Marker: whether the worker's system could be probed for job states and locks
    (``reason``: why not, as text)."""
    return Observation(PROBE, _clean(available=available, reason=reason))


def job_state(job: JobId, state: JobState, *, worker: str | None = None,
              reason: FailureReason | None = None, detail: str | None = None,
              at: float | None = None) -> Observation:
    """Where the probe found ``job``: queued, scheduled (retry), leased (by ``worker``), or
    dead (with its failure ``reason``; ``detail``: what the worker said, when that is not
    one of the contract's reasons)."""
    return Observation(STATE, _clean(job=job, state=state, worker=worker, reason=reason,
                                     detail=detail, at=at))


def lock_held(key: str, *, ttl: float | None, job: JobId | None = None,
              holder: str | None = None, age: float | None = None) -> Observation:
    """A uniqueness or overlap lock still held; ``ttl`` = seconds left, None = never expires."""
    value = _clean(key=key, job=job, holder=holder, age=age)
    value["ttl"] = ttl
    return Observation(LOCK, value)


def worker_life(worker: str, *, at: float, pid: int | None = None, ended: float | None = None,
                code: int | None = None, ready: float | None = None,
                signalled: float | None = None) -> Observation:
    """One process of ``worker``, as the harness saw it: started ``at``, ready to consume
    ``ready`` (its ``chaos_ready`` row; none: it never said so), first sent a signal that may
    end it by the harness ``signalled`` (a nemesis kill or signal, the final stop; none: its
    exit, if any, was its own), exited ``ended`` with ``code`` (negative: killed by that
    signal); no ``ended``: still running when observed. A restarted worker has one life per
    process."""
    return Observation(LIFE, _clean(worker=worker, pid=pid, at=at, ready=ready,
                                    signalled=signalled, ended=ended, code=code))
