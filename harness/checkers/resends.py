"""Was a repeated effect allowed? The ``once_unless_indeterminate`` guarantee.

A step's effect (an email) may happen again only when the worker could not know that the
earlier one had happened: the earlier send was *indeterminate*. It was when

- the SMTP link was faulted at or shortly after the message's receipt, up to the end of the
  attempt that sent it (the server accepted the message, the worker never saw the reply); or
- that attempt died between the server's acceptance and the worker's own record of it: it
  ended ``killed``, ``memory``, ``timeout`` or ``lease_lost``, or with no outcome at all, or a
  worker fault (kill, kill_job, signal, pause, restart) struck its worker, or a PostgreSQL
  link or server fault struck while it ran (the record could not be written).

A repeat by an attempt that started before the earlier send (two attempts at once) is also
allowed when that repeating attempt was itself cut off in one of these ways: it may have
looked for the record before the other attempt wrote it.

Each allowed repeat is an ``info`` anomaly naming what made it so (the fault, or the
attempt's end); any other is a ``duplicated`` failure naming the earlier send and the attempt
that repeated it. Runs only for the jobs with a repeated effect: one pass over the effect ops
and one over the attempt ops per slot.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import compress, pairwise
from typing import Any, TypeAlias

from harness.checkers.facts import Facts
from harness.checkers.findings import Findings
from harness.checkers.identity import Candidate, named
from harness.history import ATTEMPT, DISPATCH, EFFECT, FaultSpan
from harness.nemesis.events import LINK_FAULTS, SERVER_FAULTS, WORKER_FAULTS

GUARANTEE = "once_unless_indeterminate"
# Attempt ends that leave a send unrecorded: the process died, or was cut off from its lease.
DIED = frozenset({"killed", "memory", "timeout", "lease_lost"})
# Seconds of tolerance around fault spans: the nemesis records a link fault after applying it
# (and after reading the attempts in flight), so the recorded start may lag the real one.
SLACK = 0.5
MAIL_LINK, DB_LINK = "smtp", "postgres"
Why: TypeAlias = tuple[str, list[FaultSpan]]  # an explanation, and the faults it names
InFlight: TypeAlias = set[tuple[int, int]]  # (inject op, attempt op): found it in flight


@dataclass(frozen=True, slots=True)
class Run:
    """One attempt of a job, as its ``attempt`` op records it."""

    index: int
    number: int | None
    ident: Any  # ``attempt_id``: the attempt's identity (numbers may repeat)
    worker: str | None
    at: float
    ended: float | None
    status: str | None
    reason: str | None

    def label(self) -> str:
        n = "?" if self.number is None else self.number
        ident = "" if self.ident is None else f" (id {self.ident})"
        return f"attempt {n}{ident} on {self.worker or 'an unknown worker'}"

    def end(self) -> str:
        if self.status is None:
            return "has no outcome (its process died)"
        return f"ended {self.status}" + (f" ({self.reason})" if self.reason else "")

    def died(self) -> bool:
        return self.status is None or self.reason in DIED


@dataclass(frozen=True, slots=True)
class Send:
    """One observed effect: its op, when it was received, the attempt number and identity it
    carries."""

    index: int
    at: float | None
    number: int | None
    ident: Any = None


def check_resends(out: Findings, fx: Facts, slot: tuple[Any, Any], jobs: Sequence[int]) -> None:
    """Judge every repeat of ``slot`` = (step, kind) for ``jobs`` (codes with more than one
    effect there) and add an anomaly for each: ``info`` when allowed, else a failure."""
    step, kind = slot
    sends = _sends(fx, slot, jobs)
    runs = _runs(fx, jobs)
    spans = fx.h.fault_spans()
    in_flight = _in_flight(fx, spans, runs)
    failures: list[tuple[int, str, list[int]]] = []
    allowed: list[tuple[int, str, list[int]]] = []
    unsure: list[tuple[int, str, list[int]]] = []
    for c in jobs:
        job_sends, job_runs = sends.get(c, []), runs.get(c, [])
        if any(s.at is None for s in job_sends):
            unsure.append((c, f"step {step} {kind} happened {len(job_sends)} times; without "
                           "receipt times it cannot be told which repeat was allowed",
                           [s.index for s in job_sends]))
            continue
        job_sends.sort(key=lambda s: s.at)  # type: ignore[arg-type, return-value]
        job_runs.sort(key=lambda r: r.at)
        for earlier, repeat in pairwise(job_sends):
            before, again = _attempt_of(earlier, job_runs), _attempt_of(repeat, job_runs)
            ops = [earlier.index, repeat.index,
                   *(r.index for r in (before, again) if r is not None)]
            what = (f"step {step} {kind} sent again by "
                    f"{again.label() if again else 'an unknown attempt'} (#{repeat.index})")
            if before is None:
                unsure.append((c, f"{what}: no attempt of the job was recorded, so it cannot "
                               f"be told whether the earlier send #{earlier.index} was "
                               "indeterminate", ops))
                continue
            why = _indeterminate(earlier, before, spans, in_flight)
            if why is None and again is not None and again is not before and (
                    again.at < earlier.at):  # type: ignore[operator]
                why = _cut_off(again, spans, in_flight)
                if why is not None:
                    why = (f"the repeat ran alongside it and {why[0]}", why[1])
            if why is None:
                failures.append((c, f"{what} after a determinate send #{earlier.index} by "
                                 f"{before.label()}: no SMTP fault near it, and that attempt "
                                 f"{before.end()} with no worker or database fault while it "
                                 "ran", ops))
            else:
                allowed.append((c, f"{what}, allowed: the earlier send #{earlier.index} by "
                                f"{before.label()} was indeterminate: {why[0]}",
                                [*ops, *(s.inject for s in why[1])]))
    # Failures first, so that the sample of anomalies shows them.
    for c, detail, ops in failures:
        out.add("duplicated", c, detail, ops, evidence=(DISPATCH,))
    for c, detail, ops in unsure:
        out.add("duplicated", c, detail, ops, severity="unknown", evidence=(ATTEMPT,))
    for c, detail, ops in allowed:
        out.add("duplicated", c, detail, ops, severity="info")


def _indeterminate(send: Send, run: Run, spans: Iterable[FaultSpan], in_flight: InFlight
                   ) -> Why | None:
    """Why ``send`` (made by ``run``) may not have been known to the worker, or None."""
    at = send.at
    assert at is not None
    until = run.ended if run.ended is not None else at
    for s in spans:
        if s.kind in LINK_FAULTS and s.target == MAIL_LINK and _overlaps(s, at, until):
            return f"{s.label()} at or after its receipt", [s]
    return _cut_off(run, spans, in_flight)


def _cut_off(run: Run, spans: Iterable[FaultSpan], in_flight: InFlight) -> Why | None:
    """Why ``run`` may have died or lost touch before recording what it did, or None."""
    until = run.ended if run.ended is not None else math.inf
    struck = [s for s in spans if _strikes(s, run) and (
        _overlaps(s, run.at, until) or (s.inject, run.index) in in_flight)]
    if struck:
        return f"{', '.join(s.label() for s in struck)} struck {run.label()} while it ran" + (
            f", which {run.end()}" if run.died() else ""), struck
    if run.died():
        near = [s for s in spans
                if _overlaps(s, run.at, until) or (s.inject, run.index) in in_flight]
        faults = f" (faults while it ran: {', '.join(s.label() for s in near)})" if near else ""
        return f"{run.label()} {run.end()}{faults}", near
    return None


def _strikes(span: FaultSpan, run: Run) -> bool:
    """Whether ``span`` is a fault that can cut ``run`` off: one on its worker, or on the
    database link or server the worker records in."""
    if span.kind in WORKER_FAULTS:
        return run.worker is not None and span.target == run.worker
    return span.target == DB_LINK and (span.kind in LINK_FAULTS or span.kind in SERVER_FAULTS)


def _overlaps(span: FaultSpan, lo: float, hi: float) -> bool:
    end = math.inf if span.end is None else span.end
    return span.start <= hi + SLACK and end >= lo - SLACK


def _in_flight(fx: Facts, spans: Iterable[FaultSpan], runs: dict[int, list[Run]]) -> InFlight:
    """(inject op, attempt op) of each attempt of ``runs`` a fault recorded as in flight when
    it struck (``params.inflight``, matched by identity: :mod:`harness.checkers.identity`)."""
    codes: dict[Any, int] = {fx.job(c): c for c in runs}
    out: InFlight = set()
    for span in spans:
        for entry in span.inflight:
            c = codes.get(entry.get("job"))
            if c is not None:
                i = named(entry, span.start, (Candidate(r.index, r.number, r.ident, r.worker,
                                                        r.at) for r in runs[c]))
                if i is not None:
                    out.add((span.inject, i))
    return out


def _attempt_of(send: Send, runs: Sequence[Run]) -> Run | None:
    """The attempt that made ``send``: the one with its identity (when it carries one), else
    the one with its attempt number (when it carries one), else the last to start before it
    was received (``runs`` sorted by start)."""
    at = send.at
    assert at is not None
    if send.ident is not None:
        for r in runs:
            if r.ident == send.ident:
                return r
    if send.number is not None:
        numbered = [r for r in runs if r.number == send.number]
        if len(numbered) == 1:
            return numbered[0]
        if numbered:
            runs = numbered
    started = [r for r in runs if r.at <= at]
    return started[-1] if started else (runs[0] if runs else None)


def _sends(fx: Facts, slot: tuple[Any, Any], jobs: Sequence[int]) -> dict[int, list[Send]]:
    """job code -> its effects in ``slot`` (for ``jobs`` only)."""
    idx, codes = fx.of(EFFECT)
    _, steps, kinds = fx.effect_ops
    h = fx.h
    pick = list(map(set(jobs).__contains__, codes))
    step, kind = slot
    out: dict[int, list[Send]] = {}
    for i, c, s, k, at, n, ident in zip(
            compress(idx, pick), compress(codes, pick), compress(steps, pick),
            compress(kinds, pick), compress(h.field(EFFECT, "at"), pick),
            compress(h.field(EFFECT, "attempt"), pick),
            compress(h.field(EFFECT, "attempt_id"), pick), strict=True):
        if s == step and k == kind:
            out.setdefault(c, []).append(Send(i, _time(at), _count(n), _ident(ident)))
    return out


def _runs(fx: Facts, jobs: Sequence[int]) -> dict[int, list[Run]]:
    """job code -> its attempts (for ``jobs`` only; an attempt without a start is left out)."""
    idx, codes = fx.attempt_ops
    h = fx.h
    pick = list(map(set(jobs).__contains__, codes))
    columns = [compress(h.field(ATTEMPT, key), pick)
               for key in ("attempt", "attempt_id", "worker", "at", "ended", "status", "reason")]
    out: dict[int, list[Run]] = {}
    for i, c, n, ident, worker, at, ended, status, reason in zip(
            compress(idx, pick), compress(codes, pick), *columns, strict=True):
        start = _time(at)
        if start is not None:
            out.setdefault(c, []).append(Run(
                i, _count(n), _ident(ident), worker if isinstance(worker, str) else None, start,
                _time(ended),
                status if isinstance(status, str) else None,
                reason if isinstance(reason, str) else None))
    return out


def _time(x: Any) -> float | None:
    """A time field's value (None where it is missing or not a number)."""
    t = type(x)
    return x if t is float else float(x) if t is int else None


def _count(x: Any) -> int | None:
    """An attempt number (None where it is missing or not an integer)."""
    return x if type(x) is int else None


def _ident(x: Any) -> int | str | None:
    """An attempt's identity (None where it is missing)."""
    return x if type(x) is int or type(x) is str else None
