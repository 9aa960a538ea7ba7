"""Check results: validity, anomalies, and how results compose."""

from __future__ import annotations

import dataclasses
import enum
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Final, Literal, TypeAlias

from harness.history import JobId

if TYPE_CHECKING:
    from harness.checkers.policy import Policy
    from harness.history import History


class Validity(enum.StrEnum):
    """What a check concluded: ``invalid`` beats ``unknown`` beats ``valid``."""

    VALID = "valid"
    UNKNOWN = "unknown"
    INVALID = "invalid"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK: Final = {Validity.VALID: 0, Validity.UNKNOWN: 1, Validity.INVALID: 2}

Severity: TypeAlias = Literal["failure", "unknown", "info"]
SEVERITY_VALIDITY: Final[dict[str, Validity]] = {
    "failure": Validity.INVALID,
    "unknown": Validity.UNKNOWN,
    "info": Validity.VALID,
}

# Every anomaly kind, in the order reports list them.
ANOMALY_KINDS: Final = (
    "lost", "stuck", "unresolved", "duplicated", "unexpected", "unsuccessful_completion",
    "regressed", "retry_bound", "hammering", "unaccounted_failure", "lock_leaked", "recovered",
    "stalled", "dropped_on_shutdown", "slow_shutdown", "exited", "not_ready",
    "overlapping", "overran",
)


def worst(validities: Iterable[Validity]) -> Validity:
    """The combined validity: invalid beats unknown beats valid (none at all: unknown)."""
    out: Validity | None = None
    for v in validities:
        if out is None or v.rank > out.rank:
            out = v
    return Validity.UNKNOWN if out is None else out


@dataclasses.dataclass(frozen=True, slots=True)
class Anomaly:
    """One thing wrong (or worth saying) about one job, with the ops that prove it."""

    kind: str
    job: JobId | None
    ops: tuple[int, ...]
    detail: str
    severity: Severity = "failure"

    @property
    def validity(self) -> Validity:
        return SEVERITY_VALIDITY[self.severity]


@dataclasses.dataclass(frozen=True, slots=True)
class CheckResult:
    """A checker's verdict. ``anomalies`` is a capped sample per kind; ``counts`` is complete."""

    name: str
    validity: Validity
    anomalies: tuple[Anomaly, ...] = ()
    counts: Mapping[str, int] = dataclasses.field(default_factory=dict)
    notes: tuple[str, ...] = ()
    error: str | None = None
    children: tuple[CheckResult, ...] = ()

    @property
    def valid(self) -> bool:
        return self.validity is Validity.VALID

    def of_kind(self, kind: str) -> tuple[Anomaly, ...]:
        return tuple(a for a in self.anomalies if a.kind == kind)


Checker: TypeAlias = Callable[["History", "Policy"], CheckResult]


def compose(results: Iterable[CheckResult], name: str = "all") -> CheckResult:
    """One result for several: worst validity, all anomalies, counts summed by key."""
    children = tuple(results)
    counts: dict[str, int] = {}
    for r in children:
        for k, n in r.counts.items():
            counts[k] = counts.get(k, 0) + n
    return CheckResult(
        name=name,
        validity=worst(r.validity for r in children),
        anomalies=tuple(a for r in children for a in r.anomalies),
        counts=counts,
        notes=tuple(f"{r.name}: {n}" for r in children for n in r.notes),
        error="; ".join(f"{r.name}: {r.error}" for r in children if r.error) or None,
        children=children,
    )


def run_guarded(name: str, checker: Checker, history: History, policy: Policy) -> CheckResult:
    """Run one checker; if it raises, the result is unknown and carries the error."""
    try:
        return checker(history, policy)
    except Exception as e:
        where = traceback.extract_tb(e.__traceback__)[-1]
        return CheckResult(
            name=name,
            validity=Validity.UNKNOWN,
            error=f"{type(e).__name__}: {e} (at {where.filename}:{where.lineno})",
        )
