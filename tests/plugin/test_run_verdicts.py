"""A run must end in a verdict, a verdict must be valid to pass (unknown fails with its
reason), and the replay command a failing run prints reproduces the failure."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SILENT_WORKER = f"{sys.executable} {Path(__file__).parent / 'workers' / 'silent_worker.py'}"
IDLE_WORKER = f"{sys.executable} {Path(__file__).parent / 'workers' / 'idle_worker.py'}"


def test_a_run_that_never_reaches_a_verdict_fails_at_teardown(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        from harness.contract import db_write, job

        def test_forgets_to_check(chaos):
            chaos.start_workers(1)
            chaos.dispatch(job("a", db_write()))
            chaos.drain()

        def test_checks(chaos):
            from harness.nemesis import plan
            chaos.check(plan(1, [job("b", db_write())]))

        def test_uses_no_run(chaos):
            pass
        """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*test_forgets_to_check started workers or dispatched jobs "
                                 "and ended without a verdict: end the scenario with "
                                 "chaos.check(plan)*"])


def run_pytest(*args: str, artifacts: Path, env: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                           "-p", "no:xdist", f"--jobchaos-artifacts-dir={artifacts}", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=240,
                          env={**os.environ, **(env or {})}, check=False)


@pytest.mark.parametrize("scenario", ["scenarios/test_poison_jobs.py",
                                      "scenarios/test_fault_schedules.py"])
def test_an_unknown_verdict_fails_with_its_reason(tmp_path: Path, scenario: str):
    done = run_pytest(scenario, f"--jobchaos-worker-cmd={SILENT_WORKER}",
                      "--jobchaos-probe-cmd=none", artifacts=tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out[-3000:]
    assert "UNKNOWN is not a pass" in out, out[-3000:]
    assert "1 failed" in out


def test_the_printed_replay_command_reproduces_the_failure(tmp_path: Path):
    first = run_pytest("scenarios/test_poison_jobs.py", "--jobchaos-worker-bugs=no_backoff",
                       artifacts=tmp_path / "first")
    out = first.stdout
    assert first.returncode == 1 and "hammering" in out, out[-3000:]
    [command] = set(re.findall(r"^replay: (pytest .+)$", out, re.MULTILINE))
    argv = shlex.split(command)
    assert "--jobchaos-worker-bugs=no_backoff" in argv and any(
        a.startswith("--jobchaos-seed=") for a in argv)
    again = run_pytest(*argv[1:], artifacts=tmp_path / "again")
    assert again.returncode == 1 and "hammering" in again.stdout, again.stdout[-3000:]
    # The replay ran the same plan: the same jobs were dispatched.
    assert re.findall(r"jobs: (\d+) dispatched", again.stdout) == re.findall(
        r"jobs: (\d+) dispatched", out)


def test_a_failing_scripted_scenario_can_be_shrunk(tmp_path: Path):
    done = run_pytest("scenarios/test_poison_jobs.py", "--jobchaos-worker-bugs=no_backoff",
                      "--jobchaos-shrink=6", artifacts=tmp_path)
    out = done.stdout
    assert done.returncode == 1, out[-3000:]
    shrunk = re.search(r"shrunk in (\d+) candidates from (\d+) jobs and 0 events:\n(\d+) jobs",
                       out)
    assert shrunk, out[-4000:]
    assert int(shrunk.group(1)) <= 6 and int(shrunk.group(3)) < int(shrunk.group(2))
    assert len(set(re.findall(r"^replay: (pytest .+)$", out, re.MULTILINE))) == 2


def test_a_worker_that_never_consumes_fails_once_and_stops_the_session(tmp_path: Path):
    done = run_pytest("scenarios/test_poison_jobs.py", "scenarios/test_timeout.py",
                      "scenarios/test_memory.py", f"--jobchaos-worker-cmd={IDLE_WORKER}",
                      "--jobchaos-probe-cmd=none", artifacts=tmp_path)
    out = done.stdout
    assert done.returncode != 0
    assert out.count("FAILED scenarios/") == 1, out[-4000:]
    assert "Interrupted: jobchaos: WorkerNotConsumingError: no worker took a job in" in out
    assert "Likely causes: the worker reads another queue than CHAOS_QUEUE" in out
    assert "1 failed" in out.splitlines()[-1], out[-2000:]
    seconds = float(re.findall(r"in ([\d.]+)s", out.splitlines()[-1])[0])
    assert seconds < 30, "the first test fails within its bound, the rest do not run"


@pytest.mark.parametrize("content, message", [
    (None, "cannot read it"),
    ("{nope", "not JSON"),
    ('{"jobs": 4, "events": []}', "not a jobchaos replay file"),
])
def test_an_unusable_replay_file_is_one_usage_error(pytester: pytest.Pytester, tmp_path: Path,
                                                     content, message):
    path = tmp_path / "replay.json"
    if content is not None:
        path.write_text(content)
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess(f"--jobchaos-replay={path}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert message in err and "--jobchaos-replay" in err and "Traceback" not in err, err
    assert len([line for line in err.splitlines() if line.strip()]) <= 2, err
