"""The lease heartbeat: a thread that extends the lease of the attempt being run.

It has its own Redis connection, so a slow or cut link delays only the heartbeat, never the
main loop's timeout and memory enforcement. Every ``lease / 3`` it extends the lease and the
job's uniqueness lock; if the lease was taken away (a reaper reclaimed it), it tells the main
loop, which kills the attempt: the job now belongs to someone else. It also fences: an attempt
whose lease was last renewed ``FENCE`` leases ago (the link is down, or the worker was frozen)
is stopped before the lease can expire, since a reaper may then hand the job to another worker
and two attempts of one job must never run at once. The clock starts when the renewal (or the
fetch that took the lease) was sent, so it never runs behind Redis's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from reference_worker.links import describe
from reference_worker.log import log
from reference_worker.registry import Fetched, Registry

FENCE = 0.8  # of the lease: stop an attempt whose lease went this long without renewal


class Heartbeat(threading.Thread):
    def __init__(self, registry: Registry, *, lease: float, lock_ttl: float | None,
                 wake: Callable[[], None]) -> None:
        super().__init__(name="heartbeat", daemon=True)
        self.registry = registry
        self.lease = lease
        self.lock_ttl = lock_ttl
        self.interval = lease / 3
        self.fence = lease * FENCE
        self._since = 0.0  # monotonic time the last renewal of the tracked lease was sent
        self._wake = wake
        self._cond = threading.Condition()
        self._job: Fetched | None = None
        self._lost: str | None = None
        self._stopping = False

    def track(self, job: Fetched, since: float) -> None:
        """Keep ``job``'s lease; ``since``: the monotonic time its fetch was sent."""
        with self._cond:
            self._job, self._lost, self._since = job, None, since

    def untrack(self) -> None:
        with self._cond:
            self._job = None

    def lost(self) -> str | None:
        """Why the tracked attempt lost its lease (or is about to), or None while it holds it."""
        with self._cond:
            if self._lost is None and self._job is not None:
                unrenewed = time.monotonic() - self._since
                if unrenewed >= self.fence:
                    self._lost = (f"lease of attempt {self._job.attempt} not renewed for "
                                  f"{unrenewed:.2f} s: stopped before it can be reclaimed")
            return self._lost

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self.is_alive():
            self.join(timeout=self.interval + 5)

    def run(self) -> None:
        failing_since: float | None = None
        while True:
            with self._cond:
                wait = self.interval
                if self._job is not None and self._lost is None:  # wake at the fence
                    wait = min(wait, max(0.0, self._since + self.fence - time.monotonic()))
                self._cond.wait(wait)
                if self._stopping:
                    return
                job = self._job
            if job is None:
                continue
            if self.lost() is not None:
                self._wake()
                continue
            sent = time.monotonic()
            try:
                state = self.registry.heartbeat(job, lease=self.lease, lock_ttl=self.lock_ttl)
            except Exception as exc:  # the heartbeat must outlive any error
                if failing_since is None:
                    failing_since = time.monotonic()
                    log(f"heartbeat for {job.job_id}: link down ({describe(exc)}); retrying")
                continue
            if failing_since is not None:
                log(f"heartbeat for {job.job_id}: link back after "
                    f"{time.monotonic() - failing_since:.1f} s")
                failing_since = None
            if state != 0:
                with self._cond:
                    if self._job is job:
                        self._since = max(self._since, sent)
            if state == 2:
                log(f"heartbeat for {job.job_id}: Redis had forgotten the lease; restored it")
            elif state == 0:
                with self._cond:
                    if self._job is job:
                        self._lost = f"lease of attempt {job.attempt} was reclaimed by a reaper"
                self._wake()
