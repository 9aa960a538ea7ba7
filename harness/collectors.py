"""Collectors: after the drain, turn what the harness can see into history observations.

Five sources, each read by the harness itself (not taken from the worker's word alone):
the contract tables in PostgreSQL (attempts, effect rows, outcomes), the SMTP sink's messages,
the worker system's own state through the probe command (docs/contract.md, section 5), and
the worker processes the harness ran (when each started and exited).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from harness import history as h
from harness.contract import (
    FAILURE_REASONS,
    FailureReason,
    OutcomeStatus,
    ProbeState,
)
from harness.services import readiness
from harness.services.readiness import ReadyRow
from harness.services.smtp import SinkMessage
from harness.services.workers import WorkerProcess

PROBE_TIMEOUT = 30.0


class AttemptRow(NamedTuple):
    """A ``chaos_attempts`` row (epoch seconds for times)."""

    id: int  # the attempt's identity
    job: str
    attempt: int  # its number, as the worker counted it (may repeat)
    worker: str
    started: float
    stopped: float | None = None  # when its process ended, if its worker said so


class EffectRow(NamedTuple):
    """A ``chaos_effects`` row."""

    job: str
    step: int
    id: int
    at: float
    attempt_id: int | None = None


class OutcomeRow(NamedTuple):
    """A ``chaos_outcomes`` row (the table's CHECK keeps status and reason to the vocabulary)."""

    job: str
    attempt: int
    worker: str
    status: OutcomeStatus
    reason: FailureReason | None
    at: float
    attempt_id: int | None = None  # the attempt it ended, when the worker said


@dataclass(frozen=True, slots=True)
class TableRows:
    """The contract tables as read after the drain, each in row order."""

    attempts: list[AttemptRow]
    effects: list[EffectRow]
    outcomes: list[OutcomeRow]
    ready: list[ReadyRow] = field(default_factory=list)  # chaos_ready


def read_tables(database_url: str) -> TableRows:
    """Read the contract tables in one snapshot."""
    import psycopg

    with psycopg.connect(database_url, connect_timeout=10) as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        attempts = conn.execute(
            "SELECT id, job_id, attempt, worker, extract(epoch FROM started_at)::float8, "
            "extract(epoch FROM stopped_at)::float8 FROM chaos_attempts ORDER BY id").fetchall()
        effects = conn.execute(
            "SELECT job_id, step, id, extract(epoch FROM at)::float8, attempt_id "
            "FROM chaos_effects ORDER BY id").fetchall()
        outcomes = conn.execute(
            "SELECT job_id, attempt, worker, status, reason, extract(epoch FROM at)::float8, "
            "attempt_id FROM chaos_outcomes ORDER BY id").fetchall()
        ready = [ReadyRow(str(w), None if pid is None else int(pid), float(at))
                 for w, pid, at in conn.execute(readiness.READY_SQL).fetchall()]
    return TableRows([AttemptRow(*r) for r in attempts], [EffectRow(*r) for r in effects],
                     [OutcomeRow(*r) for r in outcomes], ready)


def match_outcomes(attempts: Sequence[AttemptRow], outcomes: Sequence[OutcomeRow]
                   ) -> list[int | None]:
    """The attempt each outcome row ended (its id; None: none found). An outcome row that
    names its ``attempt_id`` ended that attempt. The others (a worker that does not supply
    it), taken in order of time, each ended the latest attempt with its (job, attempt number,
    worker) that started at or before it and that no outcome row ended yet: so two runs of a
    job that share an attempt number and a worker stay two attempts. The gauges match the
    same way in SQL (``harness.run.gauges.OPEN_SQL``)."""
    matched = {o.attempt_id for o in outcomes if o.attempt_id is not None}
    by_key: dict[tuple[str, int, str], list[AttemptRow]] = {}
    for a in sorted(attempts, key=lambda a: (a.started, a.id)):
        if a.id not in matched:
            by_key.setdefault((a.job, a.attempt, a.worker), []).append(a)
    out: list[int | None] = [o.attempt_id for o in outcomes]
    unnamed = [k for k, o in enumerate(outcomes) if o.attempt_id is None]
    for k in sorted(unnamed, key=lambda k: (outcomes[k].at, k)):
        o = outcomes[k]
        for a in reversed(by_key.get((o.job, o.attempt, o.worker), ())):
            if a.started <= o.at and a.id not in matched:
                out[k] = a.id
                matched.add(a.id)
                break
    return out


def table_observations(rows: TableRows) -> list[h.Observation]:
    """Effect rows, every outcome row (``completed``, ``retrying``, ``dead``: a row written
    after a completion must show), and attempts (with the status and reason of the first
    outcome row that ended each, when one did (:func:`match_outcomes`), and when the
    attempt's process really stopped, when its worker said so)."""
    obs: list[h.Observation] = [h.effect_row(e.job, e.step, ref=e.id, at=e.at,
                                             attempt_id=e.attempt_id) for e in rows.effects]
    ended: dict[int, OutcomeRow] = {}
    for o, attempt_id in zip(rows.outcomes, match_outcomes(rows.attempts, rows.outcomes),
                             strict=True):
        if attempt_id is not None:
            ended.setdefault(attempt_id, o)
        obs.append(h.reported_outcome(o.job, o.status, reason=o.reason, attempt=o.attempt,
                                      worker=o.worker, at=o.at, attempt_id=attempt_id))
    for a in rows.attempts:
        end = ended.get(a.id)
        obs.append(h.attempt_record(a.job, at=a.started, attempt=a.attempt, attempt_id=a.id,
                                    worker=a.worker, ended=end.at if end else None,
                                    status=end.status if end else None,
                                    reason=end.reason if end else None, stopped=a.stopped))
    return obs


def message_observations(messages: Iterable[SinkMessage]) -> list[h.Observation]:
    """One email effect per tagged message received by the sink."""
    obs = []
    for m in messages:
        if m.job is None or m.step is None or not m.step.isdigit():
            continue  # not a chaos message; nothing to attribute it to
        obs.append(h.sink_message(m.job, int(m.step), ref=str(m.seq), at=m.received_at,
                                  attempt=m.attempt, attempt_id=m.attempt_id))
    return obs


def life_observations(workers: Iterable[WorkerProcess], ready: Iterable[ReadyRow] = ()
                      ) -> list[h.Observation]:
    """One ``life`` per process each worker ran: when it started, became ready (``ready``:
    the ``chaos_ready`` rows), was first signalled by the harness, and exited."""
    rows = list(ready)
    out = []
    for w in workers:
        readiness.assign(w.worker_id, w.lives, rows)
        out += [h.worker_life(w.worker_id, pid=life.pid, at=life.started, ready=life.ready,
                              signalled=life.signalled, ended=life.ended, code=life.code)
                for life in w.lives]
    return out


def run_probe(argv: Sequence[str], env: Mapping[str, str]) -> ProbeState:
    """Run a probe command with the worker's env; raise RuntimeError with its output if it fails."""
    try:
        done = subprocess.run(list(argv), env={**os.environ, **env}, capture_output=True,
                              timeout=PROBE_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"probe {' '.join(argv)} could not run: {exc}") from exc
    if done.returncode != 0:
        raise RuntimeError(f"probe {' '.join(argv)} exited {done.returncode}: "
                           f"{done.stderr.decode(errors='replace')[-500:]}")
    try:
        return ProbeState.from_json(done.stdout)
    except (ValueError, KeyError, TypeError) as exc:
        raise RuntimeError(f"probe {' '.join(argv)} printed no ProbeState JSON: {exc}") from exc


def probe_observations(state: ProbeState | None, reason: str | None = None) -> list[h.Observation]:
    """Where the probe found each unfinished job, and the locks still held."""
    if state is None:
        return [h.probe_status(False, reason or "no probe configured")]
    obs = [h.probe_status(True)]
    obs += [h.job_state(j, "queued") for j in state.queued]
    obs += [h.job_state(j, "scheduled") for j in state.scheduled]
    obs += [h.job_state(x.job_id, "leased", worker=x.worker) for x in state.leased]
    obs += [_dead_letter(x.job_id, x.reason) for x in state.dead]
    obs += [h.lock_held(x.key, ttl=x.ttl, job=x.holder) for x in state.locks]
    return obs


def _dead_letter(job: str, reason: str) -> h.Observation:
    """A dead-lettered job: a reason outside the contract's words is kept as ``detail``."""
    for word in FAILURE_REASONS:
        if reason == word:
            return h.job_state(job, "dead", reason=word)
    return h.job_state(job, "dead", detail=reason)
