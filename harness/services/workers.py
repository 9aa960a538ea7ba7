"""A pool of worker processes configured only through the contract's env vars.

The harness kills, stops and restarts workers the way production does (SIGKILL for a crash or
the OOM killer, SIGTERM for a deploy, a supervisor restarting what died), so each worker is a
real process started through :mod:`harness.procs`.
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
from typing import Self

import psutil

from harness import procs
from harness.contract import Connections, Policy, worker_env
from harness.errors import JobchaosError, WorkerCommandError
from harness.services import readiness
from harness.services.base import log_tail
from harness.services.readiness import ReadyRow

REFERENCE_WORKER = (sys.executable, "-m", "reference_worker")


WORKER_CMD_HOW = "--jobchaos-worker-cmd / JOBCHAOS_WORKER_CMD / ini jobchaos_worker_cmd"
READY_TIMEOUT_HOW = ("--jobchaos-ready-timeout / JOBCHAOS_READY_TIMEOUT / ini "
                     "jobchaos_ready_timeout")
READY_POLL = 0.05  # seconds between looks at chaos_ready while waiting
PROVEN_AFTER = 3.0  # seconds a worker must have run before the command counts as working
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
                 log_path: Path) -> None:
        self.worker_id = worker_id
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.started_at = 0.0
        self.lives: list[Life] = []

    def start(self) -> Self:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.process = procs.spawn(self.argv, log_path=self.log_path, env=self.env)
        except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
            raise WorkerCommandError(
                f"{self.worker_id}: the worker command {' '.join(self.argv)!r} cannot run: "
                f"{exc.strerror}: {exc.filename or self.argv[0]}. Fix: set {WORKER_CMD_HOW} "
                "to a command whose program exists and is executable."
            ) from None
        self.starts += 1
        self.started_at = time.monotonic()
        self.lives.append(Life(self.process.pid, time.time()))
        return self

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
        """SIGKILL the worker and everything in its process group, as a crash would."""
        if self.process is not None:
            if self.process.poll() is None:
                self._signalled()
            procs.terminate(self.process, signal.SIGKILL, timeout=5)
            self._poll()

    def _signalled(self) -> None:
        """Stamp the current life: from now on, its exit may be the harness's doing."""
        if self.lives and self.lives[-1].signalled is None:
            self.lives[-1].signalled = time.time()

    def job_processes(self) -> list[psutil.Process]:
        """The worker's descendants: the processes running its jobs (none for a worker that
        runs jobs in its own process)."""
        if not self.running() or self.pid is None:
            return []
        with contextlib.suppress(psutil.Error):
            return psutil.Process(self.pid).children(recursive=True)
        return []

    def kill_jobs(self) -> list[int]:
        """SIGKILL the processes running the worker's jobs, not the worker; their pids."""
        killed = []
        for p in self.job_processes():
            with contextlib.suppress(psutil.Error):
                p.kill()
                killed.append(p.pid)
        return killed

    def pause(self) -> list[int]:
        """Freeze the worker and its job processes, as a frozen VM would: SIGSTOP to its process
        group, then to each descendant (a job child may have a group of its own, as the
        reference worker's does). Returns the descendants' pids."""
        if self.process is None or not self.running():
            return []
        procs.signal_group(self.process, signal.SIGSTOP)
        return self._signal_jobs(signal.SIGSTOP)

    def resume(self) -> None:
        """Undo :meth:`pause` (SIGCONT to the job processes, then to the process group)."""
        if self.process is not None:
            self._signal_jobs(signal.SIGCONT)
            procs.signal_group(self.process, signal.SIGCONT)

    def _signal_jobs(self, sig: int) -> list[int]:
        pids = []
        for p in self.job_processes():
            with contextlib.suppress(psutil.Error):
                p.send_signal(sig)
                pids.append(p.pid)
        return pids

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
    ``report_database_url``: the direct database URL for their reports (default: their own)."""

    def __init__(self, conn: Connections | Sequence[Connections], policy: Policy, *,
                 size: int = 2,
                 argv: Sequence[str] = REFERENCE_WORKER, logdir: Path,
                 extra_env: Mapping[str, str] | None = None,
                 startup_check: float = 0.5,
                 report_database_url: str | None = None) -> None:
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
                          logdir / f"worker-{i}.log")
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
