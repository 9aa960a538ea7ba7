"""Verdicts a person can act on: a short text table, and ``results.json``.

The table lists each anomaly with its job, what is wrong, the ops that prove it (as text)
and the faults that were active at the time, failures first. ``results.json`` holds the
same and more: every checker's counts, notes and errors, the policy, the faults, and each
strike at a worker with the attempts it interrupted. A strike that interrupted nothing is a
note, not an anomaly: the worker did nothing wrong, but the scenario tested less than it
meant to.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from harness.checkers.model import ANOMALY_KINDS, Anomaly, CheckResult
from harness.checkers.policy import Policy
from harness.history import FaultSpan, History
from harness.nemesis.events import STOP_SIGNALS, WORKER_KILLS

_SEVERITY_ORDER: Final = {"failure": 0, "unknown": 1, "info": 2}
_KIND_ORDER: Final = {k: n for n, k in enumerate(ANOMALY_KINDS)}
_EVIDENCE_LINES: Final = 6
_JOB_WIDTH: Final = 20
_IDLE_SHOWN: Final = 5  # strikes that interrupted nothing, named one per line
_SUMMARY_COUNTS: Final = (
    ("dispatched", "dispatched"), ("acknowledged", "acknowledged"),
    ("indeterminate", "indeterminate"), ("completed", "completed"), ("dead", "dead"),
    ("dead_lettered", "dead-lettered"), ("attempts", "attempts"), ("effects", "effects"),
)


def ordered(anomalies: Iterable[Anomaly]) -> list[Anomaly]:
    """Failures first, then undecided, then information; by kind, then job."""
    return sorted(anomalies, key=lambda a: (_SEVERITY_ORDER[a.severity],
                                            _KIND_ORDER.get(a.kind, 99), str(a.job)))


def render(result: CheckResult, history: History, *, max_rows: int = 20,
           width: int = 140) -> str:
    """The verdict as text: a headline, the counts, and a table of anomalies."""
    lines = [f"jobchaos verdict: {result.validity.upper()}"]
    if result.children:
        lines.append("  " + ", ".join(f"{c.name} {c.validity}" for c in result.children))
    counts = result.counts
    summary = [f"{counts[k]} {label}" for k, label in _SUMMARY_COUNTS if counts.get(k)]
    if summary:
        lines.append("  jobs: " + ", ".join(summary))
    found = [f"{k} {counts[k]}" for k in ANOMALY_KINDS if counts.get(k)]
    if found:
        lines.append("  anomalies: " + ", ".join(found))
    for note in result.notes:
        lines.append(f"  note: {note}")
    for c in result.children or (result,):
        if c.error:
            lines.append(f"  error in {c.name} (its verdict is unknown): {c.error}")
    if history.truncated:
        lines.append("  note: the history's last line was cut off (the run crashed)")
    idle = idle_strikes(history)
    for span in idle[:_IDLE_SHOWN]:
        lines.append(f"  note: {span.label()} interrupted nothing: no attempt was running on "
                     f"{span.target} when it struck")
    if len(idle) > _IDLE_SHOWN:
        lines.append(f"  note: ... and {len(idle) - _IDLE_SHOWN} more strikes that "
                     "interrupted nothing (in results.json)")

    anomalies = ordered(result.anomalies)
    if not anomalies:
        return "\n".join(lines) + "\n"
    shown = anomalies[:max_rows]
    rows = [_row(a, history, width) for a in shown]
    kind_w = max(len("anomaly"), *(len(r[0][0]) for r in rows))
    job_w = max(len("job"), *(len(r[0][1]) for r in rows))
    fault_w = max(len("faults active"), *(len(f) for r in rows for f in r[2]))
    longest = max(len(line) for r in rows for line in r[1])
    ev_w = min(longest, max(20, width - kind_w - job_w - fault_w - 6))
    lines.append("")
    lines.append(f"{'anomaly':<{kind_w}}  {'job':<{job_w}}  {'evidence':<{ev_w}}  faults active")
    lines.append(f"{'-' * kind_w}  {'-' * job_w}  {'-' * ev_w}  {'-' * fault_w}")
    for (kind, job), evidence, faults in rows:
        for n in range(max(len(evidence), len(faults))):
            left = (kind, job) if n == 0 else ("", "")
            ev = _cut(evidence[n], ev_w) if n < len(evidence) else ""
            fault = faults[n] if n < len(faults) else ""
            lines.append(f"{left[0]:<{kind_w}}  {left[1]:<{job_w}}  {ev:<{ev_w}}  {fault}"
                         .rstrip())
    hidden = sum(counts.get(k, 0) for k in ANOMALY_KINDS) - len(shown)
    if hidden > 0:
        lines.append(f"... and {hidden} more anomalies (counted; samples in results.json)")
    return "\n".join(lines) + "\n"


def is_strike(span: FaultSpan) -> bool:
    """A fault meant to interrupt the attempt a worker runs: a kill (of the worker, its job
    processes, or the host of a job) or a stop signal."""
    if span.kind in WORKER_KILLS or span.kind == "kill_job":
        return True
    params = span.params if isinstance(span.params, dict) else {}
    return span.kind in ("signal", "restart") and str(
        params.get("signal", "SIGTERM")) in STOP_SIGNALS


def _interrupted(span: FaultSpan) -> list[Any] | None:
    """The attempts ``span`` found in flight (None: the nemesis could not tell)."""
    params = span.params if isinstance(span.params, dict) else {}
    found = params.get("inflight")
    return found if isinstance(found, list) else None


def idle_strikes(history: History) -> list[FaultSpan]:
    """The strikes that found no attempt in flight on their worker: they interrupted nothing."""
    return [s for s in history.fault_spans() if is_strike(s) and _interrupted(s) == []]


def _row(a: Anomaly, history: History, width: int
         ) -> tuple[tuple[str, str], list[str], list[str]]:
    kind = a.kind if a.severity == "failure" else f"{a.kind} ({a.severity})"
    job = "-" if a.job is None else _cut(str(a.job), _JOB_WIDTH)
    evidence = [a.detail]
    ops = list(a.ops)
    evidence += ["  " + history.describe(i) for i in ops[:_EVIDENCE_LINES]]
    if len(ops) > _EVIDENCE_LINES:
        evidence.append(f"  ... {len(ops) - _EVIDENCE_LINES} more ops")
    faults = [s.label() for s in history.faults_active(ops, job=a.job)] or ["-"]
    return (kind, job), evidence, faults


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def results_dict(result: CheckResult, history: History, policy: Policy | None = None
                 ) -> dict[str, Any]:
    """Everything about a verdict, as JSON-ready data."""

    def anomaly(a: Anomaly) -> dict[str, Any]:
        return {
            "kind": a.kind,
            "job": a.job,
            "severity": a.severity,
            "detail": a.detail,
            "ops": list(a.ops),
            "evidence": [history.describe(i) for i in a.ops],
            "faults": [s.label() for s in history.faults_active(a.ops, job=a.job)],
        }

    def checker(r: CheckResult) -> dict[str, Any]:
        return {
            "validity": str(r.validity),
            "counts": dict(r.counts),
            "notes": list(r.notes),
            "error": r.error,
            "anomalies": [anomaly(a) for a in ordered(r.anomalies)],
        }

    return {
        "validity": str(result.validity),
        "counts": dict(result.counts),
        "notes": list(result.notes),
        "error": result.error,
        "checkers": {c.name: checker(c) for c in result.children or (result,)},
        "anomalies": [anomaly(a) for a in ordered(result.anomalies)],
        "faults": [
            {"fault": s.fault, "kind": s.kind, "target": s.target, "params": s.params,
             "inject": s.inject, "heal": s.heal, "start": s.start, "end": s.end}
            for s in history.fault_spans()
        ],
        "strikes": [
            {"fault": s.fault, "kind": s.kind, "target": s.target,
             "interrupted": _interrupted(s)}
            for s in history.fault_spans() if is_strike(s)
        ],
        "idle_strikes": [s.fault for s in idle_strikes(history)],
        "history": {"ops": len(history), "truncated": history.truncated},
        "policy": policy.to_dict() if policy is not None else None,
    }


def write_results(path: str | os.PathLike[str], result: CheckResult, history: History,
                  policy: Policy | None = None) -> Path:
    """Write ``results.json`` (``path`` may be a directory) and return its path."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = results_dict(result, history, policy)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return path
