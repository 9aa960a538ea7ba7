"""The ``kill_host`` event: a job that crashes whatever runs it, on every attempt (an
in-process worker with no fork, an OOM that takes the whole container).

A :class:`CrashLoop` watches one job's attempts through the run's gauges (direct connections,
never faulted). Each attempt that starts on a live worker process is due a strike: the
interpreter SIGKILLs that worker, records one inject and heal under its own fault id with the
attempt in flight, and restarts the worker after the event's duration. The watch ends when the
job has a terminal outcome, or after :func:`bound` seconds: a worker that never ends the loop
(it retries the job forever) is then left to the drain and the checkers, so the strikes never
outlive the run's nemesis.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.nemesis.events import Event

if TYPE_CHECKING:  # harness.run imports the interpreter, which imports this module
    from harness.run.gauges import Gauges
    from harness.run.policy import RunPolicy


@dataclass(frozen=True, slots=True)
class Attempt:
    """An attempt of the job, running on a live worker process: the one to strike."""

    job: str
    attempt_id: int  # its identity (``chaos_attempts.id``)
    attempt: int  # its number, as the worker counted it
    worker: str

    def as_inflight(self) -> dict[str, Any]:
        return {"job": self.job, "attempt": self.attempt, "attempt_id": self.attempt_id,
                "worker": self.worker}


def bound(policy: RunPolicy, down: float) -> float:
    """The longest a crash loop lasts on a correct worker: the drain deadline, plus for every
    allowed try the lease that must expire before a reaper gives the job back, and the
    restart."""
    return policy.for_checkers().drain_deadline_s + policy.max_tries * (policy.lease + down)


@dataclass
class CrashLoop:
    """The watch of one ``kill_host`` event, until ``until`` (monotonic) at the latest."""

    event: Event
    until: float
    struck: set[int] = field(default_factory=set)  # the attempts killed, by identity

    @property
    def job(self) -> str:
        return str(self.event.target)

    def due(self, gauges: Gauges, started: Mapping[str, float],
            live: Callable[[str], bool]) -> list[Attempt] | None:
        """The attempts to strike now (``started``: worker id -> the Unix start time of its
        current process; ``live``: whether that process runs); None once the loop is over.
        Raises on a connection error (the caller looks again)."""
        if time.monotonic() >= self.until or self.job in gauges.terminal_jobs():
            return None
        return [Attempt(self.job, i, n, worker)
                for i, n, worker, at, ended in gauges.attempts_of(self.job)
                if i not in self.struck and not ended and live(worker)
                and at >= started.get(worker, float("inf"))]
