"""Attempts are told apart by their identity, never by their number.

Each ``attempt`` op is one attempt (one ``chaos_attempts`` row), with its identity
``attempt_id``. Other ops name an attempt: an entry of a strike's ``params.inflight``, an
effect. They name it by ``attempt_id`` when they carry one. Without it (a history recorded
before attempts had identities), by its (job, attempt number, worker); a worker that redelivers
without counting repeats those, so the one named is the latest such attempt that started at or
before the naming event (an attempt in flight when a strike landed had started by then).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple


class Candidate(NamedTuple):
    """What an attempt op says of itself, for :func:`named`."""

    op: int  # the attempt op
    number: Any  # ``attempt``
    ident: Any  # ``attempt_id``
    worker: Any
    at: Any


def candidate(index: int, value: Mapping[str, Any]) -> Candidate:
    return Candidate(index, value.get("attempt"), value.get("attempt_id"), value.get("worker"),
                     value.get("at"))


def named(entry: Mapping[str, Any], when: float, attempts: Iterable[Candidate]) -> int | None:
    """The attempt op among ``attempts`` (of the entry's job) that ``entry`` (``{attempt?,
    attempt_id?, worker?}``) names at time ``when``, or None."""
    attempts = list(attempts)
    ident = entry.get("attempt_id")
    if ident is not None:
        for a in attempts:
            if a.ident == ident:
                return a.op
    number, worker = entry.get("attempt"), entry.get("worker")
    if number is None:
        return None
    best: Candidate | None = None
    for a in attempts:
        if a.number != number or (worker is not None and a.worker != worker):
            continue
        if ident is not None and a.ident is not None:
            continue  # another identity: another attempt
        if isinstance(a.at, int | float) and a.at <= when and (best is None or a.at >= best.at):
            best = a
    return None if best is None else best.op


def label(number: Any, worker: Any, ident: Any = None) -> str:
    """``attempt 2 (worker-1)``; with its identity when known, ``attempt 1 (worker-1, id 7)``
    (two attempts may share a number)."""
    n = "?" if number is None else number
    who = worker or "?"
    return f"attempt {n} ({who})" if ident is None else f"attempt {n} ({who}, id {ident})"
