"""A pool of worker processes configured only through the contract's env vars.

The harness kills, stops and restarts workers the way production does (SIGKILL for a crash or
the OOM killer, SIGTERM for a deploy, a supervisor restarting what died), so each worker is a
real process started through :mod:`harness.procs`, in a cgroup of its own where one can be made
(:mod:`harness.services.cgroups`): a kill reaches every process it started, also those that
left its process group, and a memory limit holds whatever the worker does, as a container's
would. Without a cgroup, a kill reaches the descendants captured at that moment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, Self

import psutil

from harness import procs
from harness.contract import Connections, Policy, worker_env
from harness.errors import JobchaosError, WorkerCommandError
from harness.services import cgroups, readiness
from harness.services.base import log_tail
from harness.services.cgroups import MIB, Cgroup, CgroupError, Hierarchy
from harness.services.readiness import ReadyRow

REFERENCE_WORKER = (sys.executable, "-m", "reference_worker")


WORKER_CMD_HOW = "--jobchaos-worker-cmd / JOBCHAOS_WORKER_CMD / ini jobchaos_worker_cmd"
READY_TIMEOUT_HOW = ("--jobchaos-ready-timeout / JOBCHAOS_READY_TIMEOUT / ini "
                     "jobchaos_ready_timeout")
READY_POLL = 0.05  # seconds between looks at chaos_ready while waiting
PROVEN_AFTER = 3.0  # seconds a worker must have run before the command counts as working
# Memory a worker process may grow by after it settled (buffers, a thread's stack), on top of
# its settled usage and the policy's per-job limit, before the harness's limit bites.
HEADROOM: Final = 16 * MIB
SETTLE_SAMPLE: Final = 0.1  # seconds between two reads of a settling worker's memory
SETTLE_TIMEOUT: Final = 5.0  # the longest the harness waits for a worker's memory to settle
DETECT: Final = "detect"  # a worker's cgroups go where :func:`cgroups.hierarchy` finds
# A worker of this process signalled readiness, or (not waited for) ran PROVEN_AFTER s: the
# command itself works.
_proven = False


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


class WorkerPool:
    """``size`` workers named ``worker-1``..``worker-N`` running ``argv``, all with ``conn``
    or each with its own (``conn`` a sequence of ``size``: e.g. each through its own links);
    ``report_database_url``: the direct database URL for their reports (default: their own);
    ``hierarchy``: where their cgroups go (None: no cgroups; default: where one can)."""

    def __init__(self, conn: Connections | Sequence[Connections], policy: Policy, *,
                 size: int = 2,
                 argv: Sequence[str] = REFERENCE_WORKER, logdir: Path,
                 extra_env: Mapping[str, str] | None = None,
                 startup_check: float = 0.5,
                 report_database_url: str | None = None,
                 hierarchy: Hierarchy | Literal["detect"] | None = DETECT) -> None:
        if size < 1:
            raise ValueError("a worker pool needs at least one worker")
        base = dict(os.environ)
        base.update(extra_env or {})
        self.startup_check = startup_check
        conns = [conn] * size if isinstance(conn, Connections) else list(conn)
        if len(conns) != size:
            raise ValueError(f"{len(conns)} connections given for {size} workers")
        self.workers = [
            WorkerProcess(f"worker-{i}", argv,
                          {**base, **worker_env(c, policy, f"worker-{i}",
                                                 report_database_url=report_database_url)},
                          logdir / f"worker-{i}.log", hierarchy=hierarchy)
            for i, c in enumerate(conns, start=1)
        ]

    def __getitem__(self, index: int) -> WorkerProcess:
        return self.workers[index]

    def __len__(self) -> int:
        return len(self.workers)

    def start(self) -> Self:
        """Start every worker; fail with its log if one exits within ``startup_check`` s."""
        try:
            for w in self.workers:
                w.start()
        except WorkerCommandError:
            self.stop(grace=2)
            raise
        deadline = time.monotonic() + self.startup_check
        while time.monotonic() < deadline:
            for w in self.workers:
                if not w.running():
                    self.stop(grace=2)
                    raise _exited(w, "right after it started")
            time.sleep(0.02)
        return self

    def impose_memory_limits(self, mb: int) -> list[int | None]:
        """Limit each worker's cgroup to its settled memory plus ``mb`` MiB (and
        :data:`HEADROOM`): see :meth:`WorkerProcess.impose_memory_limit`. Settled: two reads
        :data:`SETTLE_SAMPLE` s apart differ by less than 1 MiB (or :data:`SETTLE_TIMEOUT`
        passed). Returns each limit in bytes (None: not imposed)."""
        baselines = _settled([w.memory_usage for w in self.workers])
        return [w.impose_memory_limit(mb, baseline=b) if b is not None else None
                for w, b in zip(self.workers, baselines, strict=True)]
    def wait_ready(self, read: Callable[[], list[ReadyRow]], timeout: float) -> None:
        """Wait until every worker's current process has signalled readiness (``read``: the
        ``chaos_ready`` rows so far). A worker that exits first is a start-up error; after
        ``timeout`` s, :class:`WorkerNotReadyError` names those not ready, with their logs.
        Either way the pool is stopped before raising."""
        global _proven
        began = time.monotonic()
        problem = ""
        while True:
            for w in self.workers:
                if w.returncode is not None:  # not running(): its age proves nothing here
                    self.stop(grace=2)
                    raise _exited(w, f"{time.monotonic() - began:.1f} s after it started, "
                                     "before it was ready")
            try:
                rows = read()
            except Exception as exc:  # the database restarting: look again
                problem = f"reading chaos_ready failed: {type(exc).__name__}: {exc}"
            else:
                problem = ""
                for w in self.workers:
                    readiness.assign(w.worker_id, w.lives, rows)
                if all(w.lives[-1].ready is not None for w in self.workers):
                    _proven = True  # a worker consumed: the command works
                    return
                problem = _unknown_names(rows, self.workers)
            if time.monotonic() - began >= timeout:
                self.stop(grace=2)
                raise _not_ready([w for w in self.workers if w.lives[-1].ready is None],
                                 time.monotonic() - began, problem)
            time.sleep(READY_POLL)

    def restart_dead(self) -> list[str]:
        """Restart every worker that is not running (what a supervisor does); return their ids."""
        restarted = []
        for w in self.workers:
            if not w.running():
                w.restart()
                restarted.append(w.worker_id)
        return restarted

    def stop(self, grace: float = 10.0) -> None:
        """Warm-stop every worker (SIGTERM to all first, so they drain in parallel)."""
        for w in self.workers:
            w.resume()  # a paused worker cannot act on SIGTERM
            w.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for w in self.workers:
            w.stop(grace=max(0.1, deadline - time.monotonic()), signalled=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _settled(reads: Sequence[Callable[[], int | None]]) -> list[int | None]:
    """The values of ``reads`` once none moved by 1 MiB between two reads (or at the
    deadline)."""
    last = [read() for read in reads]
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while any(v is not None for v in last) and time.monotonic() < deadline:
        time.sleep(SETTLE_SAMPLE)
        now = [read() for read in reads]
        if all(a is None or b is None or abs(b - a) < MIB for a, b in zip(last, now,
                                                                          strict=True)):
            return now
        last = now
    return last
def _exited(w: WorkerProcess, when: str) -> WorkerStartError:
    """The start-up error of a worker that exited ``when``."""
    error = WorkerStartError if _proven else FirstWorkerStartError
    return error(
        f"{w.worker_id} exited with code {w.returncode} {when}."
        f"\n  command: {' '.join(w.argv)}\n  log: {w.log_path}\n"
        f"  last lines of its log:\n{log_tail(w.log_path)}\n"
        "Fix: run the command by hand with the CHAOS_* variables from "
        f"docs/contract.md and look at what it prints ({WORKER_CMD_HOW}).")


def _not_ready(waiting: list[WorkerProcess], waited: float, problem: str
               ) -> WorkerNotReadyError:
    w = waiting[0]
    names = ", ".join(x.worker_id for x in waiting)
    return WorkerNotReadyError(
        f"{names} did not signal readiness within {waited:.1f} s of starting: no chaos_ready "
        "row with worker = its CHAOS_WORKER_ID was written after its process started"
        f"{f' ({problem})' if problem else ''}.\n"
        f"  command: {' '.join(w.argv)}\n  log: {w.log_path}\n"
        f"  last lines of its log:\n{log_tail(w.log_path)}\n"
        "Fix: make the worker insert one row into chaos_ready (worker = CHAOS_WORKER_ID, "
        "pid) over CHAOS_REPORT_DATABASE_URL once it takes jobs (docs/contract.md, "
        f"\"Readiness\"); a worker that starts slowly needs a longer {READY_TIMEOUT_HOW}; "
        "one that cannot signal readiness is declared without the `ready` feature in its "
        "worker profile (--jobchaos-worker-profile).")


def _unknown_names(rows: list[ReadyRow], workers: Sequence[WorkerProcess]) -> str:
    """Says so when chaos_ready has rows under names no worker of the pool has."""
    known = {w.worker_id for w in workers}
    unknown = sorted({r.worker for r in rows} - known)
    if not unknown:
        return ""
    return (f"chaos_ready has rows for {', '.join(map(repr, unknown[:5]))}, which is not the "
            "CHAOS_WORKER_ID of any worker")
