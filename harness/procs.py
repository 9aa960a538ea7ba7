"""Child processes that can never outlive the harness.

Every process the harness starts goes through :func:`spawn`, which gives it

- its own session and process group, so a stop reaches the whole tree (``os.killpg``);
- ``PR_SET_PDEATHSIG=SIGKILL``, so the kernel kills it if the harness process dies, even by
  SIGKILL, where no Python cleanup can run;
- a marker in its environment (``JOBCHAOS_OWNER_PID``), so a psutil sweep finds stragglers: at
  exit for our own children, and at start for children of a harness that died before us;
- optionally (``join``) a cgroup it enters before ``exec``, so nothing it starts escapes it.

An ``atexit`` hook stops everything still registered. "No such process" counts as stopped.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import psutil

OWNER_ENV = "JOBCHAOS_OWNER_PID"

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_live: dict[int, subprocess.Popen[bytes]] = {}
_live_lock = threading.Lock()


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: ask the kernel to SIGKILL us when our parent dies."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _then(join: Callable[[], None]) -> Callable[[], None]:
    def preexec() -> None:
        _die_with_parent()
        join()
    return preexec


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
    join: Callable[[], None] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` as an owned child: own session, dies with us, marked, stdout+stderr to a
    log; ``join`` runs in the child before ``exec`` (it moves the child into its cgroup)."""
    child_env = dict(os.environ if env is None else env)
    child_env[OWNER_ENV] = str(os.getpid())
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env,
            cwd=cwd,
            user=user,
            start_new_session=True,
            preexec_fn=_die_with_parent if join is None else _then(join),
        )
    finally:
        if log_path:
            log.close()  # type: ignore[union-attr]
    with _live_lock:
        _live[proc.pid] = proc
    return proc


def signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Send ``sig`` to the child's whole process group; a group already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def terminate(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
    """Stop gracefully with ``sig``, then SIGKILL the group after ``timeout``; return the exit code."""
    if proc.poll() is None:
        signal_group(proc, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            signal_group(proc, signal.SIGKILL)
            proc.wait()
    # The leader may be gone while members of its group linger (e.g. postgres backends).
    signal_group(proc, signal.SIGKILL)
    forget(proc)
    return proc.returncode


def kill_tree(pid: int, timeout: float = 5.0) -> list[int]:
    """SIGKILL process ``pid``, its process group, and every descendant, also those that left
    the group (``setpgrp``, ``setsid``): each is stopped first so none can fork past the
    capture, then all are killed. For a process without a cgroup of its own; returns the pids
    killed."""
    deadline = time.monotonic() + timeout
    try:
        tree = [psutil.Process(pid)]
    except psutil.NoSuchProcess:
        tree = []
    stopped: dict[int, psutil.Process] = {}
    while tree and time.monotonic() < deadline:  # stop each, then look for its children
        more = []
        for p in tree:
            with contextlib.suppress(psutil.Error):
                p.send_signal(signal.SIGSTOP)
                stopped[p.pid] = p
                more += p.children(recursive=True)
        tree = [p for p in more if p.pid not in stopped]
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    for p in stopped.values():
        with contextlib.suppress(psutil.Error):
            p.kill()
    return list(stopped)


def forget(proc: subprocess.Popen[bytes]) -> None:
    with _live_lock:
        _live.pop(proc.pid, None)


def owned_processes(owner_pid: int | None = None) -> list[psutil.Process]:
    """Processes carrying our marker: those of ``owner_pid``, or (None) of any dead owner."""
    found = []
    me = os.getpid()
    for p in psutil.process_iter(["pid"]):
        if p.pid == me:
            continue
        try:
            owner = p.environ().get(OWNER_ENV)
        except (psutil.Error, OSError):
            continue
        if owner is None or not owner.isdigit():
            continue
        if owner_pid is not None:
            if int(owner) == owner_pid:
                found.append(p)
        elif not psutil.pid_exists(int(owner)):
            found.append(p)
    return found


def kill_processes(procs: Sequence[psutil.Process], grace: float = 3.0) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL what is left."""
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=grace)


def sweep_orphans() -> int:
    """Kill processes left by a harness that died without cleaning up; return how many."""
    orphans = owned_processes(None)
    kill_processes(orphans)
    return len(orphans)


def stop_all(grace: float = 5.0) -> None:
    """Stop every child still registered, then sweep anything else carrying our marker."""
    with _live_lock:
        procs = list(_live.values())
    deadline = time.monotonic() + grace
    for proc in procs:
        terminate(proc, timeout=max(0.1, deadline - time.monotonic()))
    kill_processes(owned_processes(os.getpid()), grace=1.0)


atexit.register(stop_all)
