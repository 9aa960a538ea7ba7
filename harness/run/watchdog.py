"""What every waiting loop of a run does: supervise the workers (restart one that exited on
its own, :mod:`harness.run.supervisor`), and check that they consume at all. A worker that
never takes a job (wrong queue name, wrong Redis URL, a shim that never reports) would
otherwise cost every scenario its full drain deadline and end in a verdict that explains
nothing; it is a session-level mistake instead, said once."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from harness.errors import SessionError
from harness.run.gauges import Gauges
from harness.run.policy import RunPolicy
from harness.run.workload import Workload
from harness.run.world import World
from harness.services.base import log_tail


class WorkerNotConsumingError(SessionError):
    """No worker took any job long after jobs were dispatched (every later test would wait
    the same way, so the session stops)."""


class Watchdog:
    """``check()`` supervises the workers, and raises if none consumes within the bound of
    the first dispatch (counted from when the workers were ready, if that came later)."""

    def __init__(self, world: World, workload: Workload, gauges: Gauges,
                 policy: Callable[[], RunPolicy]) -> None:
        self.world = world
        self.workload = workload
        self.gauges = gauges
        self.policy = policy  # the run's policy
        self.consumed = False

    def bound(self) -> float:
        """The checkers' bound on a live worker leaving ready work waiting."""
        return self.policy().for_checkers().consume_bound_s

    def check(self) -> None:
        self.world.check_workers()
        first = self.workload.first_dispatch
        if self.consumed or first is None or self.world.pool is None:
            return
        up = self.world.up_since
        waited = time.monotonic() - (first if up is None else max(first, up))
        if waited < self.bound():
            return
        try:
            self.consumed = self.gauges.activity() > 0
        except Exception:
            return  # a server restarting: look next time
        if not self.consumed:
            raise self._error(waited)

    def _error(self, waited: float) -> WorkerNotConsumingError:
        w = self.world.workers[0]
        queue = self.world.direct.queue
        where = ("in the worker's system (its probe)" if self.gauges.probing
                 else f"on the queue {queue!r}")
        waiting = "?"
        with contextlib.suppress(Exception):
            waiting = str(self.gauges.queued(set(self.workload.dispatched)))
        errors = self.workload.errors
        raised = (f"; the dispatcher raised {len(errors)} time(s), first: {errors[0][:200]}"
                  if errors else "")
        return WorkerNotConsumingError(
            f"no worker took a job in {waited:.1f} s after the first dispatch "
            f"({waiting} still {where}{raised}); every later scenario would wait out "
            "its drain deadline the same way, so the session stops here.\n"
            "  Likely causes: the worker reads another queue than CHAOS_QUEUE (or the "
            "dispatcher enqueues elsewhere); it connects to another Redis than "
            "CHAOS_REDIS_URL; it never writes chaos_attempts, chaos_effects or chaos_outcomes "
            "rows (docs/contract.md); it is stuck starting.\n"
            f"  command: {' '.join(w.argv)}\n  log: {w.log_path}\n"
            f"  last lines of its log:\n{log_tail(w.log_path)}\n"
            "Fix: run the command by hand with the CHAOS_* variables from docs/contract.md and "
            "check that it takes a job from CHAOS_QUEUE and writes its attempt row.")
