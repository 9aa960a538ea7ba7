"""Collecting anomalies inside a checker: complete counts, capped samples, batched evidence."""

from __future__ import annotations

from collections.abc import Iterable

from harness.checkers.facts import Facts
from harness.checkers.model import SEVERITY_VALIDITY, Anomaly, CheckResult, Severity, Validity, worst
from harness.checkers.policy import Policy

# (kind, job code or None, proof ops, detail, severity, functions whose ops add evidence)
_Pending = tuple[str, int | None, tuple[int, ...], str, Severity, tuple[str, ...]]


class Findings:
    """Anomalies of one checker. Every anomaly is counted; the first ``policy.sample_limit``
    of each kind are kept, and only those get their evidence gathered (in one pass per
    function, at :meth:`result`). Jobs are given by code and reported by id."""

    def __init__(self, name: str, policy: Policy, facts: Facts, kinds: Iterable[str]) -> None:
        self.name = name
        self.limit = policy.sample_limit
        self.facts = facts
        self.counts: dict[str, int] = dict.fromkeys(kinds, 0)
        self.notes: list[str] = []
        self._pending: list[_Pending] = []
        self._severities: set[Severity] = set()

    def add(self, kind: str, job: int | None, detail: str, ops: Iterable[int] = (),
            severity: Severity = "failure", evidence: tuple[str, ...] = ()) -> None:
        """One anomaly of job code ``job``: ``ops`` prove it; the job's ops of each function
        in ``evidence`` (e.g. ``("dispatch",)``) are added to them if it is sampled."""
        n = self.counts.get(kind, 0)
        self.counts[kind] = n + 1
        self._severities.add(severity)
        if n < self.limit:
            self._pending.append((kind, job, tuple(ops), detail, severity, evidence))

    def result(self, *, undecided: str | None = None, **stats: int) -> CheckResult:
        """The result; ``undecided`` (a reason) turns an otherwise valid result unknown."""
        validity = worst([Validity.VALID, *(SEVERITY_VALIDITY[s] for s in self._severities)])
        notes = list(self.notes)
        if undecided is not None:
            notes.append(undecided)
            if validity is Validity.VALID:
                validity = Validity.UNKNOWN
        return CheckResult(self.name, validity, self._anomalies(), {**stats, **self.counts},
                           tuple(notes))

    def _anomalies(self) -> tuple[Anomaly, ...]:
        wanted: dict[str, set[int]] = {}
        for _, job, _, _, _, evidence in self._pending:
            if job is not None:
                for f in evidence:
                    wanted.setdefault(f, set()).add(job)
        found = {f: self.facts.job_ops(f, sorted(jobs)) for f, jobs in wanted.items()}
        order = {k: n for n, k in enumerate(self.counts)}
        out = []
        # Sampled and listed in the order found, grouped by kind.
        for kind, job, ops, detail, severity, evidence in sorted(
                self._pending, key=lambda p: order.get(p[0], len(order))):
            extra = [i for f in evidence for i in found[f].get(job, ())] if job is not None else []
            job_id = self.facts.job(job) if job is not None else None
            out.append(Anomaly(kind, job_id, tuple(sorted({*ops, *extra})), detail, severity))
        return tuple(out)
