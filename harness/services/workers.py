"""One worker process under test (:class:`WorkerProcess`), and its lives.

The harness kills, stops and restarts workers the way production does (SIGKILL for a crash or
the OOM killer, SIGTERM for a deploy, a supervisor restarting what died), so each worker is a
real process started through :mod:`harness.procs`, in a cgroup of its own where one can be made
(:mod:`harness.services.cgroups`): a kill reaches every process it started, also those that
left its process group, and a memory limit holds whatever the worker does, as a container's
would. Without a cgroup, a kill reaches the descendants captured at that moment. Workers are
started and stopped together by :class:`harness.services.pool.WorkerPool`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, Self

import psutil

from harness import procs
from harness.errors import JobchaosError, WorkerCommandError
from harness.services import cgroups
from harness.services.cgroups import MIB, Cgroup, CgroupError, Hierarchy

REFERENCE_WORKER = (sys.executable, "-m", "reference_worker")


WORKER_CMD_HOW = "--jobchaos-worker-cmd / JOBCHAOS_WORKER_CMD / ini jobchaos_worker_cmd"
PROVEN_AFTER = 3.0  # seconds a worker must have run before the command counts as working
# Memory a worker process may grow by after it settled (buffers, a thread's stack), on top of
# its settled usage and the policy's per-job limit, before the harness's limit bites.
HEADROOM: Final = 16 * MIB
DETECT: Final = "detect"  # a worker's cgroups go where :func:`cgroups.hierarchy` finds
# A worker of this process signalled readiness, or (not waited for) ran PROVEN_AFTER s: the
# command itself works.
_proven = False


def mark_command_proven() -> None:
    """A worker of this process signalled readiness: the command itself works."""
    global _proven
    _proven = True


def worker_command_proven() -> bool:
    """True once a worker of this process has signalled readiness, or has been seen running
    for ``PROVEN_AFTER`` s. Until then a worker that exits (or is never ready) is taken for a
    wrong command (or setting), which every scenario would repeat, rather than for a fault of
    one scenario."""
    return _proven


class WorkerStartError(JobchaosError):
    """A worker exited right after it was started (before it was ready)."""


class FirstWorkerStartError(WorkerStartError, WorkerCommandError):
    """A worker exited right after it started before any worker of this process had proven the
    command works: the command (or its settings) is wrong, every scenario would repeat it."""


class WorkerNotReadyError(WorkerStartError):
    """A worker process ran ``ready_timeout`` seconds without signalling that it consumes."""


@dataclass
class Life:
    """One process of a worker: Unix times of its start, of its ready signal, of the first
    signal the harness sent it that may end it, and (once seen) of its exit."""

    pid: int
    started: float
    ended: float | None = None
    code: int | None = None  # negative: killed by that signal
    ready: float | None = None  # its chaos_ready row (docs/contract.md)
    signalled: float | None = None  # SIGKILL, SIGTERM or a nemesis signal, by the harness


class WorkerProcess:
    """One worker process: start, signal, kill, restart; its output goes to a log file. Its
    :attr:`lives` say when each of its processes started and exited (for the history)."""

    def __init__(self, worker_id: str, argv: Sequence[str], env: Mapping[str, str],
                 log_path: Path, *,
                 hierarchy: Hierarchy | Literal["detect"] | None = DETECT) -> None:
        self.worker_id = worker_id
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.started_at = 0.0
        self.lives: list[Life] = []
        self.hierarchy = cgroups.hierarchy() if hierarchy == DETECT else hierarchy
        self.cgroup: Cgroup | None = None  # the current process's, while it or its tree lives
        self.memory_limit_mb: int | None = None  # imposed by the harness (impose_memory_limit)
        self.baseline: int | None = None  # bytes the settled worker used: each life's base

    def start(self) -> Self:
        """Start a process of this worker, in a new cgroup (with the memory limit, if one was
        imposed) that it joins before ``exec``."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._release()  # what a previous process left (a supervisor kills it too)
        self.cgroup = self._new_cgroup()
        try:
            self.process = procs.spawn(self.argv, log_path=self.log_path, env=self.env,
                                       join=self.cgroup.join if self.cgroup else None)
        except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
            self._release()
            raise WorkerCommandError(
                f"{self.worker_id}: the worker command {' '.join(self.argv)!r} cannot run: "
                f"{exc.strerror}: {exc.filename or self.argv[0]}. Fix: set {WORKER_CMD_HOW} "
                "to a command whose program exists and is executable."
            ) from None
        except BaseException:
            self._release()
            raise
        self.starts += 1
        self.started_at = time.monotonic()
        self.lives.append(Life(self.process.pid, time.time()))
        return self

    def _new_cgroup(self) -> Cgroup | None:
        if self.hierarchy is None:
            return None
        try:
            group = self.hierarchy.make(f"{self.worker_id}-{self.starts + 1}")
        except CgroupError:
            return None  # found usable, not now: the kill falls back on psutil
        if self.memory_limit_mb is not None and self.baseline is not None:
            group.limit(self._limit(self.baseline))
        return group

    def _release(self) -> None:
        """Kill whatever is left in the cgroup of the last process and remove it."""
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None

    # -- the memory limit the harness imposes ----------------------------------------------
    def _limit(self, baseline: int) -> int:
        assert self.memory_limit_mb is not None
        return baseline + self.memory_limit_mb * MIB + HEADROOM

    def memory_usage(self) -> int | None:
        """Bytes the worker's cgroup holds now (None: no cgroup with memory accounting)."""
        if self.cgroup is None or self.hierarchy is None or self.hierarchy.memory is not None:
            return None
        with contextlib.suppress(OSError, ValueError):
            return self.cgroup.usage()
        return None

    def impose_memory_limit(self, mb: int, *, baseline: int | None = None) -> int | None:
        """Limit the worker's cgroup to its memory now (``baseline``, if given: settled) plus
        ``mb`` MiB (the policy's per-job limit) plus :data:`HEADROOM`, as a container limit
        would; each later process of this worker starts under the same limit. Returns the
        limit in bytes, or None where the harness cannot impose one
        (:func:`cgroups.memory_limit_unavailable` says why)."""
        self.memory_limit_mb = mb
        usage = self.memory_usage() if baseline is None else baseline
        if usage is None or self.cgroup is None:
            return None
        self.baseline = usage
        limit = self._limit(usage)
        self.cgroup.limit(limit)
        return limit

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def running(self) -> bool:
        global _proven
        alive = self.process is not None and self._poll() is None
        if alive and not _proven and time.monotonic() - self.started_at >= PROVEN_AFTER:
            _proven = True
        return alive

    @property
    def returncode(self) -> int | None:
        return self._poll() if self.process else None

    def _poll(self) -> int | None:
        """The exit code, or None while running; the first time it is seen, the exit is
        stamped on the current life (as exact as the harness's polling: every 20 ms while a
        nemesis or a drain runs)."""
        assert self.process is not None
        code = self.process.poll()
        if code is not None and self.lives and self.lives[-1].ended is None:
            self.lives[-1].ended, self.lives[-1].code = time.time(), code
        return code

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the worker process itself (not its job children)."""
        if self.process is not None and self.process.poll() is None:
            self._signalled()
            self.process.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL the worker and every process it started, as a crash (or the OOM killer of a
        container) would: all of its cgroup, or without one, its process group and the
        descendants captured now (also those that left the group)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self._signalled()
        if self.cgroup is not None:
            self.cgroup.kill()
        elif self.process.poll() is None:
            procs.kill_tree(self.process.pid)
        procs.terminate(self.process, signal.SIGKILL, timeout=5)
        self._poll()
        self._release()

    def job_pids(self) -> list[int]:
        """The processes running the worker's jobs: every other process of its cgroup (or,
        without one, its descendants); none for a worker that runs jobs in its own process."""
        if not self.running() or self.pid is None:
            return []
        if self.cgroup is not None:
            return [p for p in self.cgroup.members() if p != self.pid]
        with contextlib.suppress(psutil.Error):
            return [p.pid for p in psutil.Process(self.pid).children(recursive=True)]
        return []

    def _signalled(self) -> None:
        """Stamp the current life: from now on, its exit may be the harness's doing."""
        if self.lives and self.lives[-1].signalled is None:
            self.lives[-1].signalled = time.time()

    def kill_jobs(self) -> list[int]:
        """SIGKILL the processes running the worker's jobs, not the worker; their pids. Each
        is stopped first, so none forks past the kill."""
        if self.cgroup is not None and self.pid is not None and self.running():
            stopped = self.cgroup.signal(signal.SIGSTOP, skip=self.pid)
        else:
            stopped = self._signal_each(self.job_pids(), signal.SIGSTOP)
        return self._signal_each(stopped, signal.SIGKILL)

    def pause(self) -> list[int]:
        """Freeze the worker and its job processes, as a frozen VM would: SIGSTOP to every
        process of its cgroup (without one: its process group, then each descendant, since a
        job child may have a group of its own). Returns the job processes' pids."""
        if self.process is None or not self.running():
            return []
        if self.cgroup is not None:
            return [p for p in self.cgroup.signal(signal.SIGSTOP) if p != self.pid]
        procs.signal_group(self.process, signal.SIGSTOP)
        return self._signal_each(self.job_pids(), signal.SIGSTOP)

    def resume(self) -> None:
        """Undo :meth:`pause` (SIGCONT to the job processes, then to the worker)."""
        if self.process is None:
            return
        if self.cgroup is not None:
            self.cgroup.signal(signal.SIGCONT, skip=self.pid)
        else:
            self._signal_each(self.job_pids(), signal.SIGCONT)
        procs.signal_group(self.process, signal.SIGCONT)

    @staticmethod
    def _signal_each(pids: Sequence[int], sig: int) -> list[int]:
        done = []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
                done.append(pid)
        return done

    def stop(self, grace: float = 10.0, *, signalled: bool = False) -> int | None:
        """A warm stop: one SIGTERM (unless ``signalled`` already), up to ``grace`` seconds to
        finish, then SIGKILL to the group. One signal only: a second SIGTERM means "cold"."""
        if self.process is None:
            return None
        if not signalled:
            self.resume()
            self.signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(grace)
        self._poll()
        code = procs.terminate(self.process, signal.SIGKILL, timeout=5)
        self._poll()
        self._release()
        return code

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        code = self.process.wait(timeout)
        self._poll()
        return code

    def restart(self) -> Self:
        """Kill what is left of the old process and start a new one (a supervisor's restart)."""
        self.kill()
        return self.start()
