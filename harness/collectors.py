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


@dataclass(frozen=True, slots=True)
class TableRows:
    """The contract tables as read after the drain (epoch seconds for times)."""

    attempts: list[tuple[str, int, str, float]]  # job, attempt, worker, started
    effects: list[tuple[str, int, int, float]]  # job, step, row id, at
    # job, attempt, worker, status, reason, at (the table's CHECK keeps to the vocabulary)
    outcomes: list[tuple[str, int, str, OutcomeStatus, FailureReason | None, float]]
    # (job, attempt, worker) -> when that attempt's process ended (``stopped_at``, optional)
    stopped: Mapping[tuple[str, int, str], float] = field(default_factory=dict)
    ready: list[ReadyRow] = field(default_factory=list)  # chaos_ready


def read_tables(database_url: str) -> TableRows:
    """Read the contract tables in one snapshot."""
    import psycopg

    with psycopg.connect(database_url, connect_timeout=10) as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        rows = conn.execute(
            "SELECT job_id, attempt, worker, extract(epoch FROM started_at)::float8, "
            "extract(epoch FROM stopped_at)::float8 FROM chaos_attempts ORDER BY id").fetchall()
        effects = conn.execute(
            "SELECT job_id, step, id, extract(epoch FROM at)::float8 "
            "FROM chaos_effects ORDER BY id").fetchall()
        outcomes = conn.execute(
            "SELECT job_id, attempt, worker, status, reason, extract(epoch FROM at)::float8 "
            "FROM chaos_outcomes ORDER BY id").fetchall()
        ready = [ReadyRow(str(w), None if pid is None else int(pid), float(at))
                 for w, pid, at in conn.execute(readiness.READY_SQL).fetchall()]
    attempts = [(job, n, worker, started) for job, n, worker, started, _ in rows]
    stopped = {(job, n, worker): at for job, n, worker, _, at in rows if at is not None}
    return TableRows(attempts, effects, outcomes, stopped, ready)


def table_observations(rows: TableRows) -> list[h.Observation]:
    """Effect rows, every outcome row (``completed``, ``retrying``, ``dead``: a row written
    after a completion must show), and attempts (with the status and reason of the outcome
    row that ended each, when one did, and when the attempt's process really stopped, when
    its worker said so)."""
    obs: list[h.Observation] = [h.effect_row(job, step, ref=row_id, at=at)
                                for job, step, row_id, at in rows.effects]
    ended: dict[tuple[str, int, str], tuple[float, OutcomeStatus, FailureReason | None]] = {}
    for job, attempt, worker, status, reason, at in rows.outcomes:
        ended.setdefault((job, attempt, worker), (at, status, reason))
        obs.append(h.reported_outcome(job, status, reason=reason, attempt=attempt,
                                      worker=worker, at=at))
    for job, attempt, worker, started in rows.attempts:
        end = ended.get((job, attempt, worker))
        obs.append(h.attempt_record(job, at=started, attempt=attempt, worker=worker,
                                    ended=end[0] if end else None,
                                    status=end[1] if end else None,
                                    reason=end[2] if end else None,
                                    stopped=rows.stopped.get((job, attempt, worker))))
    return obs


def message_observations(messages: Iterable[SinkMessage]) -> list[h.Observation]:
    """One email effect per tagged message received by the sink."""
    obs = []
    for m in messages:
        if m.job is None or m.step is None or not m.step.isdigit():
            continue  # not a chaos message; nothing to attribute it to
        obs.append(h.sink_message(m.job, int(m.step), ref=str(m.seq), at=m.received_at,
                                  attempt=m.attempt))
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
