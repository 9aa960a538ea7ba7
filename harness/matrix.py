"""The detection matrix: every scenario against the reference worker, and against each bug.

``python -m harness.matrix`` runs ``pytest scenarios/`` once with the correct worker (every
scenario must pass) and once per bug switch over the scenarios listed for it (each must
fail there, for the anomaly expected), then writes ``docs/detection-matrix.md``. Exit code 0
only when both hold. ``benchmarks/detection_rate.py`` repeats it to measure rates.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# bug -> (scenario tests that must catch it, anomaly kinds that count as the right reason)
EXPECTED: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ack_early": (("test_worker_crash.py::test_sigkill_between_effect_and_ack",), ("lost",)),
    "no_reaper": (("test_worker_crash.py::test_sigkill_between_effect_and_ack",), ("stuck",)),
    "timeout_skips_failed_hook": (("test_timeout.py",), ("lost", "unresolved")),
    "timeout_not_enforced": (("test_timeout.py",), ("overran",)),
    "memory_kill_unrecorded": (("test_memory.py",), ("lost", "unresolved")),
    "effects_not_idempotent": (("test_worker_crash.py::test_sigkill_between_effect_and_ack",
                                "test_server_restarts.py::test_postgres_restart_mid_run"),
                               ("duplicated",)),
    "status_before_effects": (("test_database_link.py::test_postgres_link_fault_during_effects"
                               "_and_status_writes[down]",), ("unsuccessful_completion",)),
    "unbounded_retries": (("test_poison_jobs.py",), ("retry_bound",)),
    "no_backoff": (("test_poison_jobs.py",), ("hammering",)),
    "lock_never_expires": (("test_locks.py",), ("lock_leaked",)),
    "swallow_smtp_errors": (("test_smtp_link.py::test_smtp_link_fault[down]",),
                            ("unsuccessful_completion",)),
    "lease_shorter_than_timeout": (("test_lease.py",), ("overlapping",)),
    "stop_consuming_after_link_error": (("test_redis_link.py::test_a_worker_cut_off_resumes_"
                                         "consuming_after_the_heal",), ("stalled",)),
    "exit_on_link_error": (("test_redis_link.py::test_a_worker_cut_off_resumes_consuming_after_"
                            "the_heal",), ("exited",)),
    "shutdown_drops_job": (("test_graceful_shutdown.py",), ("dropped_on_shutdown",)),
    "shutdown_ignores_grace": (("test_graceful_shutdown.py::test_sigterm_mid_job"
                                "[grace-shorter-than-job]",), ("slow_shutdown",)),
    "reclaim_not_counted": (("test_crash_loops.py::test_a_job_that_kills_its_worker_is_dead_"
                             "lettered_after_max_tries",), ("retry_bound",)),
    "zombie_worker": (("test_worker_cut_off.py", "test_pause.py"), ("duplicated", "regressed")),
    "no_dedupe": (("test_duplicate_dispatch.py::test_same_id_dispatched_twice_concurrently",
                   "test_server_restarts.py::test_redis_crash_with_append_only_file_loses_nothing"),
                  ("duplicated",)),
    # Redis comes back empty: the jobs running then are lost too, beyond those only Redis held
    # (the scenario expects lost for those; it fails when any other job is lost).
    "no_lease_restore": (("test_server_restarts.py::test_redis_restart_without_persistence_"
                          "loses_exactly_the_waiting_jobs",), ("lost",)),
    "email_every_retry": (("test_email_retries.py",), ("duplicated",)),
}


@dataclass
class Run:
    """One pytest run: per test id, its outcome and the anomaly kinds its verdict found."""

    bug: str | None
    outcomes: dict[str, str] = field(default_factory=dict)
    anomalies: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0
    exit_code: int = 0

    def failed(self, selector: str) -> list[str]:
        return [t for t, o in self.outcomes.items() if selector in t and o == "failed"]

    def selected(self, selector: str) -> list[str]:
        return [t for t in self.outcomes if selector in t]


KEEP_FAILURES = Path("jobchaos-artifacts") / "matrix-failures"


def run_pytest(root: Path, targets: Sequence[str], bug: str | None, workers: int,
               extra: Sequence[str] = ()) -> Run:
    """Run pytest on ``targets`` with ``bug`` switched on; collect outcomes and anomalies."""
    with tempfile.TemporaryDirectory(prefix="jobchaos-matrix-") as tmp:
        junit, artifacts = Path(tmp) / "junit.xml", Path(tmp) / "artifacts"
        env = {k: v for k, v in os.environ.items() if k not in ("REFERENCE_WORKER_BUGS",
                                                                "JOBCHAOS_WORKER_BUGS")}
        if bug:
            env["REFERENCE_WORKER_BUGS"] = bug
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                f"--junitxml={junit}", f"--jobchaos-artifacts-dir={artifacts}", *extra,
                *(["-n", str(workers)] if workers > 1 else ["-p", "no:xdist"]),
                *(f"scenarios/{t}" for t in targets)]
        started = time.monotonic()
        done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True,
                              check=False)
        run = Run(bug, seconds=time.monotonic() - started, exit_code=done.returncode)
        if not junit.exists():
            raise RuntimeError(f"pytest wrote no report (exit {done.returncode}):\n"
                               f"{done.stdout[-3000:]}{done.stderr[-2000:]}")
        for case in ET.parse(junit).iter("testcase"):
            name = f"{case.get('classname', '').split('.')[-1]}.py::{case.get('name')}"
            bad = case.find("failure") is not None or case.find("error") is not None
            skipped = case.find("skipped") is not None
            run.outcomes[name] = "failed" if bad else "skipped" if skipped else "passed"
        if bug is None and any(o == "failed" for o in run.outcomes.values()):
            # The correct worker failed: keep the evidence (histories, verdicts, logs).
            keep = root / KEEP_FAILURES / time.strftime("%Y%m%d-%H%M%S")
            shutil.copytree(artifacts, keep, dirs_exist_ok=True)
            (keep / "pytest-output.txt").write_text(done.stdout + done.stderr)
        for results in artifacts.rglob("results.json"):
            body = json.loads(results.read_text())
            run.anomalies[results.parent.name] = sorted({a["kind"] for a in body["anomalies"]
                                                         if a.get("severity") == "failure"})
    return run


def anomalies_of(run: Run, test: str) -> set[str]:
    """Anomaly kinds found by the verdict of ``test`` (its artifacts directory is named after
    its node id, as the plugin names it)."""
    from harness.run.builder import safe_name

    return set(run.anomalies.get(safe_name(f"scenarios/{test}"), ()))


@dataclass
class Row:
    bug: str
    tests: tuple[str, ...]
    caught: bool
    right_reason: bool
    found: list[str]
    seconds: float


def evaluate(root: Path, workers: int, bugs: Sequence[str]) -> tuple[Run, list[Row]]:
    baseline = run_pytest(root, [""], None, workers)
    rows = []
    for bug in bugs:
        tests, reasons = EXPECTED[bug]
        run = run_pytest(root, tests, bug, workers)
        failing = [t for sel in tests for t in run.failed(sel)]
        caught = all(run.failed(sel) and len(run.failed(sel)) == len(run.selected(sel))
                     for sel in tests)
        found = sorted(set().union(*(anomalies_of(run, t) for t in failing)) if failing else [])
        rows.append(Row(bug, tests, caught, bool(set(found) & set(reasons)), found,
                        run.seconds))
    return baseline, rows


def render(baseline: Run, rows: Sequence[Row]) -> str:
    passed = sum(o == "passed" for o in baseline.outcomes.values())
    lines = [
        "# Detection matrix",
        "",
        "Written by `python -m harness.matrix`. Each bug switch of the reference worker",
        "(`reference_worker/BUGS.md`) is run under the scenarios listed for it; it is caught",
        "when every listed test fails, and caught for the right reason when the verdicts name",
        "the anomaly the bug produces.",
        "",
        f"Correct worker: {passed} of {len(baseline.outcomes)} scenario tests passed "
        f"({baseline.seconds:.0f} s).",
        "",
        "| bug switch | scenarios | caught | right reason | anomalies found | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| `{r.bug}` | {', '.join(f'`{t}`' for t in r.tests)} | "
                     f"{'yes' if r.caught else '**no**'} | "
                     f"{'yes' if r.right_reason else '**no**'} | {', '.join(r.found) or '-'} "
                     f"| {r.seconds:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.matrix", description=__doc__)
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers")
    parser.add_argument("--bug", action="append", choices=sorted(EXPECTED),
                        help="only these bugs (repeatable)")
    parser.add_argument("--output", type=Path, default=Path("docs/detection-matrix.md"))
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parent.parent
    baseline, rows = evaluate(root, args.workers, args.bug or sorted(EXPECTED))
    text = render(baseline, rows)
    args.output.write_text(text)
    print(text)
    ok = all(o != "failed" for o in baseline.outcomes.values()) and all(
        r.caught and r.right_reason for r in rows)
    print("detection matrix:", "OK" if ok else "FAILED", f"(written to {args.output})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
