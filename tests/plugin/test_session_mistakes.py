"""A mistake every test would repeat is reported once, names its fix, and stops the session.

Each test runs pytest in a subprocess with one bad input and three tests that would all hit it,
and checks: one message (one "Fix:"), no traceback, and the time it took.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.services.base import free_port

THREE = "\n".join(f"def test_{i}({{fixture}}): pass" for i in range(3))


def _run(pytester: pytest.Pytester, *args: str, fixture: str = "redis_url") -> tuple[
        pytest.RunResult, float]:
    pytester.makepyfile(THREE.format(fixture=fixture))
    started = time.monotonic()
    result = pytester.runpytest_subprocess("-p", "no:xdist", "-p", "no:cacheprovider", *args)
    return result, time.monotonic() - started


def _one_message(result: pytest.RunResult, *expected: str) -> str:
    out = result.stdout.str() + "\n" + result.stderr.str()
    # pytest's short summary repeats each error's first line, cut to the terminal's width
    # except on CI (CI=true), where it is whole: count the messages above it.
    reported = out.split("short test summary info")[0]
    assert reported.count("Fix:") == 1, out
    assert "Traceback" not in out and "\nE   " not in out, out
    for text in expected:
        assert text in out, out
    return out


def _stopped_after_first(result: pytest.RunResult) -> None:
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors", 0) + outcomes.get("failed", 0) == 1, outcomes
    assert "passed" not in outcomes
    assert "Interrupted: jobchaos:" in result.stdout.str()


@pytest.mark.parametrize("kind", ["missing", "not executable"])
def test_bad_redis_binary_is_one_usage_error(pytester: pytest.Pytester, tmp_path: Path, kind):
    binary = tmp_path / "redis-server"
    if kind == "not executable":
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o644)
    result, seconds = _run(pytester, f"--jobchaos-redis-bin={binary}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    _one_message(result, "redis-server not found", "Fix: set --jobchaos-redis-bin")
    assert seconds < 10


def test_missing_postgres_bin_dir_is_one_usage_error(pytester: pytest.Pytester, tmp_path: Path):
    result, seconds = _run(pytester, f"--jobchaos-postgres-bin-dir={tmp_path}/nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    _one_message(result, "postgres not found", "Fix: set --jobchaos-postgres-bin-dir")
    assert seconds < 10


@pytest.mark.parametrize("setting", ["worker-cmd", "probe-cmd"])
def test_worker_command_that_cannot_run_is_one_usage_error(pytester: pytest.Pytester,
                                                           tmp_path: Path, setting):
    result, seconds = _run(pytester, f"--jobchaos-{setting}={tmp_path}/nope/prog --flag",
                           fixture="chaos")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    _one_message(result, f"{tmp_path}/nope/prog does not exist",
                 f"Fix: set --jobchaos-{setting}")
    assert seconds < 10


def test_bad_worker_profile_is_one_usage_error(pytester: pytest.Pytester, tmp_path: Path):
    path = tmp_path / "worker.toml"
    path.write_text("[features]\nlocks = 'no'\n")
    result, seconds = _run(pytester, f"--jobchaos-worker-profile={path}", fixture="chaos")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    _one_message(result, f"worker_profile: '{path}' (from --jobchaos-worker-profile)",
                 "[features] locks = 'no' is not true or false", "Fix: set locks = true or "
                 "locks = false")
    assert seconds < 10


def test_unknown_bug_switch_is_one_usage_error(pytester: pytest.Pytester):
    result, _ = _run(pytester, "--jobchaos-worker-bugs=ack_early,no_such_bug", fixture="chaos")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    _one_message(result, "unknown bug switch no_such_bug", "Fix: set --jobchaos-worker-bugs")


@pytest.mark.parametrize(("path", "reason"), [("/proc/jobchaos/x", "No such file or directory"),
                                              ("{file}/x", "Not a directory")])
def test_unusable_artifacts_dir_is_one_usage_error(pytester: pytest.Pytester, tmp_path: Path,
                                                   path, reason):
    (tmp_path / "file").write_text("")
    result, seconds = _run(pytester, "--jobchaos-artifacts-dir=" + path.format(file=tmp_path / "file"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    _one_message(result, "artifacts_dir: cannot write to", reason,
                 "with --jobchaos-artifacts-dir / JOBCHAOS_ARTIFACTS_DIR")
    assert seconds < 10


def test_an_unused_artifacts_dir_is_not_left_behind(pytester: pytest.Pytester, tmp_path: Path):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess(f"--jobchaos-artifacts-dir={tmp_path}/a/b")
    result.assert_outcomes(passed=1)
    assert not (tmp_path / "a" / "b").exists()


def _private_mount_works() -> bool:
    try:
        return subprocess.run(["unshare", "--mount", "true"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


needs_mount = pytest.mark.skipif(not _private_mount_works(),
                                 reason="needs `unshare --mount` (root) for a private tmpfs")


def _under_tmpfs(pytester: pytest.Pytester, artifacts: Path, options: str, fill: bool,
                 *args: str) -> pytest.RunResult:
    """pytest in a private mount namespace with the artifacts dir on a 256 KiB tmpfs."""
    artifacts.mkdir(parents=True, exist_ok=True)
    setup = f"mount -t tmpfs -o {options},size=256k tmpfs {artifacts}"
    if fill:
        setup += f" && (dd if=/dev/zero of={artifacts}/filler bs=4k 2>/dev/null || true)"
    argv = " ".join(f"'{a}'" for a in (sys.executable, "-m", "pytest", "-p", "no:xdist",
                                       "-p", "no:cacheprovider",
                                       f"--jobchaos-artifacts-dir={artifacts}", *args))
    return pytester.run("unshare", "--mount", "sh", "-c", f"{setup} && exec {argv}",
                        timeout=120)


@needs_mount
@pytest.mark.parametrize(("options", "fill", "reason"),
                         [("ro", False, "Read-only file system"),
                          ("rw", True, "No space left on device")])
def test_read_only_or_full_artifacts_dir_is_one_usage_error(pytester: pytest.Pytester,
                                                            tmp_path: Path, options, fill, reason):
    pytester.makepyfile(THREE.format(fixture="smtp_sink"))
    started = time.monotonic()
    result = _under_tmpfs(pytester, tmp_path / "artifacts", options, fill)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    out = _one_message(result, f"artifacts_dir: cannot write to {tmp_path / 'artifacts'}",
                       reason)
    assert "smtp" not in out.lower()
    assert time.monotonic() - started < 10


@needs_mount
def test_disk_filling_up_during_the_session_blames_the_disk(pytester: pytest.Pytester,
                                                            tmp_path: Path):
    artifacts = tmp_path / "artifacts"
    pytester.makepyfile(f"""
        import subprocess

        def test_0_fill_the_disk():
            subprocess.run("dd if=/dev/zero of={artifacts}/filler bs=4k", shell=True,
                           capture_output=True)

        def test_1(smtp_sink): pass
        def test_2(smtp_sink): pass
        """)
    result = _under_tmpfs(pytester, artifacts, "rw", False)
    out = _one_message(result, f"the filesystem of {artifacts}", "No space left on device",
                       "Fix: free space there")
    assert "passed" in result.parseoutcomes() and "Interrupted: jobchaos:" in out


@pytest.mark.parametrize("service", ["redis", "postgres", "smtp"])
def test_external_server_that_refuses_fails_in_seconds(pytester: pytest.Pytester, service):
    port = free_port()  # nothing listens there: connections are refused at once
    option = {"redis": f"--jobchaos-redis-url=redis://127.0.0.1:{port}/0",
              "postgres": f"--jobchaos-database-url=postgresql://u@127.0.0.1:{port}/postgres",
              "smtp": f"--jobchaos-smtp=127.0.0.1:{port}"}[service]
    result, seconds = _run(pytester, option)  # the default start timeout is 30 s
    _stopped_after_first(result)
    _one_message(result, f"external {service} at 127.0.0.1:{port} is not there",
                 "Connection refused")
    assert seconds < 10


def test_external_host_that_does_not_resolve_fails_in_seconds(pytester: pytest.Pytester):
    result, seconds = _run(pytester, "--jobchaos-redis-url=redis://no-such-host.invalid:6379/0")
    _stopped_after_first(result)
    _one_message(result, "external redis at no-such-host.invalid:6379 is not there")
    assert seconds < 10


def test_external_server_that_accepts_but_never_answers_waits_the_start_timeout(
        pytester: pytest.Pytester):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes connections; nobody ever says a word
        port = silent.getsockname()[1]
        result, seconds = _run(pytester, f"--jobchaos-redis-url=redis://127.0.0.1:{port}/0",
                               "--jobchaos-start-timeout=4")
    _stopped_after_first(result)
    _one_message(result, f"external redis at 127.0.0.1:{port} did not answer within 4 s")
    assert 4 <= seconds < 15


def test_toxiproxy_that_refuses_fails_once_in_seconds(pytester: pytest.Pytester):
    port = free_port()
    result, seconds = _run(pytester, f"--jobchaos-toxiproxy-url=http://127.0.0.1:{port}",
                           fixture="faults")
    _stopped_after_first(result)
    _one_message(result, "FaultProxyError", f"http://127.0.0.1:{port}", "Connection refused")
    assert seconds < 10


@pytest.mark.skipif(os.geteuid() != 0, reason="the PostgreSQL system user is used only as root")
def test_server_that_cannot_start_stops_the_session(pytester: pytest.Pytester):
    result, seconds = _run(pytester, "--jobchaos-pg-user=bad user!")
    _stopped_after_first(result)
    _one_message(result, "creating the system user 'bad user!'", "Fix: create an unprivileged")
    assert seconds < 10


def test_worker_that_never_signals_readiness_is_one_message_within_the_ready_timeout(
        pytester: pytest.Pytester):
    pytester.makepyfile("\n".join(f"def test_{i}(chaos): chaos.start_workers(2)"
                                  for i in range(3)))
    started = time.monotonic()
    result = pytester.runpytest_subprocess(
        "-p", "no:xdist", "-p", "no:cacheprovider", "--jobchaos-ready-timeout=2",
        "--jobchaos-worker-cmd", "python -c \"import time; print('loading'); time.sleep(1e9)\"")
    seconds = time.monotonic() - started
    _stopped_after_first(result)
    _one_message(result, "WorkerNotReadyError: worker-1, worker-2 did not signal readiness "
                         "within 2.", "no chaos_ready row with worker = its CHAOS_WORKER_ID",
                 "command: python -c", "worker-1.log", "loading",
                 "Fix: make the worker insert one row into chaos_ready",
                 "--jobchaos-ready-timeout")
    assert seconds < 15
