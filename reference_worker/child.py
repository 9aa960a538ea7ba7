"""Run one attempt in a child process that the worker can always kill and always account for.

The child is forked (the parent is already warm: no imports, no start-up), moves into its own
process group and memory cgroup, asks the kernel to SIGKILL it if the worker dies
(``PR_SET_PDEATHSIG``), runs the steps, writes one JSON result to a pipe and leaves with
``os._exit``. The parent waits on a pidfd, so it wakes the moment the child ends, and kills the
whole group on timeout, memory, lease loss or a cold shutdown. Whatever happens, the parent
comes back with a :class:`Result`: there is no path where a dead child goes unrecorded.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import select
import signal
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from reference_worker.memory import MemoryGuard
from reference_worker.steps import StepRunner

ResultKind = Literal["ok", "exception", "timeout", "killed", "memory", "interrupted"]
MAX_DETAIL = 2000  # bytes of error text the child sends back (well under a pipe's buffer)
MAX_WAIT_SLICE = 0.25  # the parent re-checks its interrupt condition at least this often

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class ForkFailed(OSError):
    """The job's child process could not be created (out of processes or memory)."""


@dataclass(frozen=True, slots=True)
class Result:
    kind: ResultKind
    detail: str = ""


def run_in_child(steps: StepRunner, job_steps: tuple[Mapping[str, Any], ...], *, timeout: float,
                 guard: MemoryGuard, wake_fd: int, interrupt: Callable[[], str | None],
                 forked: Callable[[], None]) -> Result:
    """Fork, run ``job_steps`` in the child, wait for it under ``timeout``; never raises for
    anything the child does. ``forked()`` runs in the parent right after the fork;
    ``interrupt()`` returning a reason kills the child at once."""
    ooms_before = guard.oom_kills()
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    try:
        pid = os.fork()
    except OSError as exc:
        os.close(read_fd)
        os.close(write_fd)
        raise ForkFailed(f"could not fork the job's process: {exc}") from exc
    if pid == 0:  # the child: never returns
        os.close(read_fd)
        _child_main(steps, job_steps, guard, write_fd, parent)
    os.close(write_fd)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)  # also done by the child; whoever is first wins the race
    forked()
    try:
        verdict = _wait(pid, timeout, guard, wake_fd, interrupt)
        _, status = os.waitpid(pid, 0)
        message = _read_all(read_fd)
    finally:
        os.close(read_fd)
    return _classify(status, message, verdict, guard.oom_kills() > ooms_before)


def _wait(pid: int, timeout: float, guard: MemoryGuard, wake_fd: int,
          interrupt: Callable[[], str | None]) -> Result | None:
    """Wait for the child to end; kill it and say why if it must not go on."""
    pidfd = os.pidfd_open(pid)
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            slice_ = min(max(left, 0.0), MAX_WAIT_SLICE, guard.poll_interval or MAX_WAIT_SLICE)
            ready, _, _ = select.select([pidfd, wake_fd], [], [], slice_)
            if wake_fd in ready:
                _drain(wake_fd)
            if pidfd in ready:
                return None
            reason = interrupt()
            if reason is not None:
                verdict = Result("interrupted", reason)
            elif time.monotonic() >= deadline:
                verdict = Result("timeout", f"killed after the {timeout:g} s job timeout")
            elif guard.poll_interval is not None and guard.over_limit(pid):
                verdict = Result("memory", "killed by the RSS watchdog: over the memory limit")
            else:
                continue
            kill_group(pid)
            return verdict
    finally:
        os.close(pidfd)


def kill_group(pid: int) -> None:
    """SIGKILL the child's process group (the child and anything it started)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # not yet in its own group


def _classify(status: int, message: bytes, verdict: Result | None, oom_killed: bool) -> Result:
    body: dict[str, str] = {}
    with contextlib.suppress(ValueError):
        body = json.loads(message) if message else {}
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and body.get("ok"):
        return Result("ok")  # it finished just before the parent gave up on it
    if verdict is not None:
        return verdict
    if "error" in body:
        return Result("exception", body["error"])
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGKILL and oom_killed:
            return Result("memory", "killed by the kernel OOM killer (memory cgroup limit)")
        return Result("killed", f"killed by signal {signal.Signals(sig).name}")
    return Result("killed", f"hard exit with code {os.WEXITSTATUS(status)}, no result")


def _child_main(steps: StepRunner, job_steps: tuple[Mapping[str, Any], ...], guard: MemoryGuard,
                write_fd: int, parent: int) -> None:
    code = 1
    try:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the worker died before prctl took effect
            os._exit(1)
        os.setpgid(0, 0)
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        guard.enter()
        steps.run(job_steps)
        _send(write_fd, {"ok": True})
        code = 0
    except BaseException as exc:  # everything goes back to the parent
        tail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        _send(write_fd, {"error": tail[:MAX_DETAIL]})
    finally:
        os._exit(code)


def _send(fd: int, body: dict[str, object]) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, json.dumps(body).encode())


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError, InterruptedError):
        while os.read(fd, 4096):
            pass
