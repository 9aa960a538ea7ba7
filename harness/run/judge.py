"""Judge a run from its history alone, write the verdict where a person finds it, and fail
the test unless the verdict is valid (``unknown`` is not a pass: it fails with its reason)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from harness.checkers import CheckResult, Validity, check
from harness.history import History, Recorder
from harness.report.verdict import render, write_results
from harness.run.policy import RunPolicy


@dataclass(frozen=True)
class Judgement:
    """A run's verdict, the history it came from, and the text a person reads."""

    result: CheckResult
    history: History
    text: str

    @property
    def valid(self) -> bool:
        return self.result.validity is Validity.VALID


def judge(recorder: Recorder, policy: RunPolicy, artifacts: Path, heading: str, *,
          ready_timeout: float | None = None) -> Judgement:
    """Check the history; write ``results.json`` and ``verdict.txt`` into ``artifacts``.
    ``ready_timeout``: the bound on a worker process becoming ready (None: the workers do not
    signal readiness)."""
    history = recorder.history()
    check_policy = replace(policy.for_checkers(), ready_timeout=ready_timeout)
    result = check(history, check_policy)
    text = f"{heading}: {result.validity}\n{render(result, history)}"
    if result.validity is Validity.UNKNOWN:
        reasons = "; ".join([*result.notes, *([result.error] if result.error else [])]) or (
            "the checkers could not decide")
        text += (f"\nUNKNOWN is not a pass: {reasons}. Look at the worker's log and the "
                 "probe's answer in the artifacts.")
    write_results(artifacts / "results.json", result, history, check_policy)
    (artifacts / "verdict.txt").write_text(text)
    return Judgement(result, history, text)
