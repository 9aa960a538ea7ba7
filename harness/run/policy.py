"""The one policy of a run: what its workers are configured with and what they promise.

Workers get the knobs through the contract's env vars; the checkers judge against a policy
derived from the same object (:meth:`RunPolicy.for_checkers`), so the two cannot diverge.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any, Final

from harness.checkers.policy import DEFAULT_GUARANTEES, Guarantee
from harness.checkers.policy import Policy as CheckPolicy
from harness.contract import BACKOFF_JITTER, Policy

# What scenarios hold a worker to unless it declares less (``chaos.tune(guarantees=...)``):
# an email is sent again only when the earlier send was indeterminate.
SCENARIO_GUARANTEES: Final[Mapping[str, Guarantee]] = MappingProxyType(
    {"db_write": "exactly_once", "email": "once_unless_indeterminate"})


@dataclass(frozen=True, slots=True)
class RunPolicy(Policy):
    """The worker knobs (:class:`harness.contract.Policy`) plus the delivery guarantee of each
    effect kind (``db_write`` exactly once, ``email`` once unless the earlier send was
    indeterminate; a worker that promises only ``at_least_once`` declares it by amending)."""

    guarantees: Mapping[str, Guarantee] = field(default_factory=lambda: SCENARIO_GUARANTEES)
    # The worker declares that two attempts of one job may run at the same time.
    concurrent_attempts: bool = False
    # The worker enforces job_timeout only in whole multiples of this many seconds (RQ: whole
    # seconds; 0: exactly). Not sent to workers: it is what a worker declares about itself.
    timeout_granularity: float = 0.0

    def tuned(self, **changes: Any) -> RunPolicy:
        """A copy with ``changes``; ``guarantees`` given here amend the current ones."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"unknown policy field(s) {unknown}; known: {sorted(known)}")
        if "guarantees" in changes:
            changes["guarantees"] = {**self.guarantees, **changes["guarantees"]}
        return replace(self, **changes)

    def for_checkers(self) -> CheckPolicy:
        """The checkers' policy, derived from this one."""
        return CheckPolicy.for_worker(self, jitter=BACKOFF_JITTER,
                                      guarantees={**DEFAULT_GUARANTEES, **self.guarantees},
                                      concurrent_attempts=self.concurrent_attempts,
                                      timeout_granularity=self.timeout_granularity)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["guarantees"] = dict(self.guarantees)
        return out

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> RunPolicy:
        return SCENARIO_POLICY.tuned(**dict(body))


# Production knobs are minutes; scenarios run on these, and derive every wait from them.
SCENARIO_POLICY = RunPolicy(job_timeout=1.0, max_tries=3, backoff_base=0.1, backoff_cap=0.4,
                            lease=2.0, lock_ttl=3.0, memory_limit_mb=64, shutdown_grace=1.5)
