"""The policy a history is checked against: what the worker promised."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final, Literal, Protocol, TypeAlias, get_args

# How often a step's effect may happen. ``once_unless_indeterminate``: once, and again only
# when the earlier one was indeterminate (its link faulted, or its attempt died before
# recording it; ``harness.checkers.resends``).
Guarantee: TypeAlias = Literal["exactly_once", "at_least_once", "at_most_once",
                               "once_unless_indeterminate"]
GUARANTEES: Final[tuple[str, ...]] = get_args(Guarantee)

DEFAULT_GUARANTEES: Final[Mapping[str, Guarantee]] = MappingProxyType(
    {"db_write": "exactly_once", "email": "at_least_once"}
)


CONSUME_BOUND_MIN: Final = 3.0  # seconds; see Policy.consume_bound
# Seconds an attempt may run past the timeout its worker enforces (Policy.timeout_bound_s):
# the attempt row is written before the job's process starts and the stop after it is reaped,
# so starting and reaping it, and the worker noticing the deadline (the reference worker
# checks at least every 0.25 s), are inside the measured time. The reference worker's longest
# measured: 0.02 s past its timeout (docs/history-and-checkers.md, Policy).
TIMEOUT_SLACK: Final = 1.0


@dataclasses.dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry ``n`` (n = 1 after the first failed attempt):
    ``min(cap, base * factor ** (n - 1))``, of which jitter may take away a fraction:
    the actual delay lies in ``[(1 - jitter) * d, d]``."""

    base: float = 0.1
    cap: float = 2.0
    jitter: float = 0.0
    factor: float = 2.0

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0 or self.factor < 1 or not 0 <= self.jitter <= 1:
            raise ValueError(f"bad backoff {self}: need base, cap >= 0, factor >= 1, "
                             "0 <= jitter <= 1")

    def delay(self, retry: int) -> float:
        """The nominal delay before retry ``retry`` (1-based)."""
        return min(self.cap, self.base * self.factor ** max(0, retry - 1))

    def min_delay(self, retry: int) -> float:
        """The shortest delay jitter allows before retry ``retry``."""
        return self.delay(retry) * (1.0 - self.jitter)


class WorkerKnobs(Protocol):
    """The policy knobs a worker is configured with (``harness.contract.Policy``)."""

    @property
    def max_tries(self) -> int: ...
    @property
    def backoff_base(self) -> float: ...
    @property
    def backoff_cap(self) -> float: ...
    @property
    def job_timeout(self) -> float: ...
    @property
    def lease(self) -> float: ...
    @property
    def lock_ttl(self) -> float: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    """What a worker promised, scaled to the scenario. Times in seconds.

    ``drain_deadline`` and ``lock_bound`` default (None) to values derived from the rest:
    every try running to ``max(job_timeout, lease)`` plus every backoff, plus ``grace``.
    """

    max_tries: int = 3
    backoff: Backoff = Backoff()
    job_timeout: float = 5.0
    lease: float = 10.0
    guarantees: Mapping[str, Guarantee] = dataclasses.field(
        default_factory=lambda: DEFAULT_GUARANTEES
    )
    drain_deadline: float | None = None
    lock_bound: float | None = None
    grace: float = 1.0
    # A retry counts as hammering when it comes sooner than
    # min_delay * (1 - hammer_tolerance) - hammer_slack after the failed attempt ended.
    hammer_tolerance: float = 0.1
    hammer_slack: float = 0.01
    # Failure reasons that end a job at once, whatever tries remain (none by default).
    final_reasons: frozenset[str] = frozenset()
    # Whether the worker keeps a dead letter queue its probe reports (``state`` dead).
    dead_letter: bool = True
    # Whether the worker declares that two attempts of one job may run at the same time.
    concurrent_attempts: bool = False
    # Anomalies kept per kind per checker (counts are always complete).
    sample_limit: int = 10
    # The longest a live, idle worker may leave ready work waiting (None: two leases, at
    # least 3 s: what a worker needs to notice a healed link and fetch again).
    consume_bound: float | None = None
    # The worker's shutdown grace (None: shutdown times are not judged), and how much longer
    # than it a worker may take to exit after a stop signal (recording, settling, exiting).
    shutdown_grace: float | None = None
    shutdown_slack: float = 1.0
    # The worker enforces job_timeout in whole multiples of this (0: exactly), and an attempt
    # may run ``timeout_slack`` s longer than that (``overran``; see TIMEOUT_SLACK).
    timeout_granularity: float = 0.0
    timeout_slack: float = TIMEOUT_SLACK
    # The longest a worker process may take to signal readiness (None: the worker does not
    # signal it, and readiness is not judged).
    ready_timeout: float | None = None

    def __post_init__(self) -> None:
        if self.max_tries < 1:
            raise ValueError(f"max_tries must be >= 1, not {self.max_tries}")
        if self.timeout_granularity < 0:
            raise ValueError(f"timeout_granularity must be >= 0, not {self.timeout_granularity}")
        bad = {k: g for k, g in self.guarantees.items() if g not in GUARANTEES}
        if bad:
            raise ValueError(f"unknown guarantees {bad}")

    @classmethod
    def for_worker(cls, knobs: WorkerKnobs, *, jitter: float = 0.1, **overrides: Any) -> Policy:
        """The policy to check a worker configured with ``knobs`` against (``jitter``: the
        fraction jitter may take off a backoff delay; ``overrides``: any other field)."""
        fields: dict[str, Any] = {
            "max_tries": knobs.max_tries,
            "backoff": Backoff(base=knobs.backoff_base, cap=knobs.backoff_cap, jitter=jitter),
            "job_timeout": knobs.job_timeout,
            "lease": knobs.lease,
            "lock_bound": knobs.lock_ttl,
            "shutdown_grace": getattr(knobs, "shutdown_grace", None),
        }
        return cls(**(fields | overrides))

    @property
    def drain_deadline_s(self) -> float:
        """How long the drain may wait for every job to reach a terminal outcome."""
        if self.drain_deadline is not None:
            return self.drain_deadline
        per_try = max(self.enforced_timeout_s, self.lease)
        backoffs = sum(self.backoff.delay(n) for n in range(1, self.max_tries))
        return self.max_tries * per_try + backoffs + self.grace

    @property
    def enforced_timeout_s(self) -> float:
        """The timeout the worker really enforces: ``job_timeout`` rounded up to a whole
        multiple of ``timeout_granularity``."""
        g = self.timeout_granularity
        if g <= 0:
            return self.job_timeout
        return math.ceil(self.job_timeout / g - 1e-9) * g

    @property
    def timeout_bound_s(self) -> float:
        """The longest an attempt may run, from its start to its stop (``overran``)."""
        return self.enforced_timeout_s + self.timeout_slack

    @property
    def lock_bound_s(self) -> float:
        """The longest a uniqueness or overlap lock may live."""
        return self.lock_bound if self.lock_bound is not None else self.drain_deadline_s

    @property
    def consume_bound_s(self) -> float:
        """The longest a live, idle worker may leave ready work waiting."""
        if self.consume_bound is not None:
            return self.consume_bound
        return max(CONSUME_BOUND_MIN, 2 * self.lease)

    def guarantee(self, kind: str) -> Guarantee | None:
        return self.guarantees.get(kind)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["backoff"] = dataclasses.asdict(self.backoff)
        d["guarantees"] = dict(self.guarantees)
        d["final_reasons"] = sorted(self.final_reasons)
        d["drain_deadline_s"] = self.drain_deadline_s
        d["lock_bound_s"] = self.lock_bound_s
        d["consume_bound_s"] = self.consume_bound_s
        d["timeout_bound_s"] = self.timeout_bound_s
        return d
