"""A pool of worker processes (:class:`~harness.services.workers.WorkerProcess`) named
``worker-1``..``worker-N``, configured only through the contract's env vars: started
together, waited for until each signals readiness, limited in memory, stopped warm together.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, Self

from harness.contract import Connections, Policy, worker_env
from harness.errors import WorkerCommandError
from harness.services import readiness
from harness.services.base import log_tail
from harness.services.cgroups import MIB, Hierarchy
from harness.services.readiness import ReadyRow
from harness.services.workers import (
    DETECT,
    REFERENCE_WORKER,
    WORKER_CMD_HOW,
    FirstWorkerStartError,
    WorkerNotReadyError,
    WorkerProcess,
    WorkerStartError,
    mark_command_proven,
    worker_command_proven,
)

READY_TIMEOUT_HOW = ("--jobchaos-ready-timeout / JOBCHAOS_READY_TIMEOUT / ini "
                     "jobchaos_ready_timeout")
READY_POLL = 0.05  # seconds between looks at chaos_ready while waiting
SETTLE_SAMPLE: Final = 0.1  # seconds between two reads of a settling worker's memory
SETTLE_TIMEOUT: Final = 5.0  # the longest the harness waits for a worker's memory to settle


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
                    mark_command_proven()  # a worker consumed: the command works
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
    error = WorkerStartError if worker_command_proven() else FirstWorkerStartError
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
