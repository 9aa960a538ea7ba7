"""Warm and cold shutdown, as in RQ: the first SIGTERM (or SIGINT) stops fetching and lets the
attempt in flight finish within the grace period; the second kills it and gives the job back."""

from __future__ import annotations

import signal
import time
from typing import Any

from reference_worker.log import log


class Shutdown:
    """Warm on the first SIGTERM (or SIGINT), cold on the second."""

    def __init__(self, grace: float, *, wait_for_job: bool = False) -> None:
        self.grace = grace
        self.wait_for_job = wait_for_job  # the ``shutdown_ignores_grace`` bug
        self.warm_at: float | None = None
        self.cold_at: float | None = None

    def handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.warm_at is None:
            self.warm_at = time.monotonic()
            log(f"{name}: warm shutdown: no more fetching; in-flight work has {self.grace:g} s")
        elif self.cold_at is None:
            self.cold_at = time.monotonic()
            log(f"{name} again: cold shutdown: killing the job and giving it back")

    @property
    def requested(self) -> bool:
        return self.warm_at is not None

    def interrupt_reason(self) -> str | None:
        """Why the attempt in flight must be killed now, if it must."""
        if self.cold_at is not None:
            return "killed by a cold shutdown (second SIGTERM)"
        if self.wait_for_job:
            return None
        if self.warm_at is not None and time.monotonic() > self.warm_at + self.grace:
            return f"killed by a warm shutdown: still running after its {self.grace:g} s grace"
        return None

    def bookkeeping_over(self) -> bool:
        """After a cold shutdown, recording and settling get one more grace period."""
        return self.cold_at is not None and time.monotonic() > self.cold_at + self.grace
