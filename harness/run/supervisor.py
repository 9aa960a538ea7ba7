"""Supervision: a worker whose process exits by itself mid-run is started again, as systemd
(``Restart=always``) or Kubernetes (``restartPolicy: Always``) would do in production, and
the run goes on to its verdict.

The restart waits a backoff that doubles with each exit in a row (0.1 s, 0.2 s, ... up to
2 s), so a worker that dies again at once (a crash loop, a link that is down) does not spin;
a process that ran ``RESET_AFTER`` s starts the count again. Workers the nemesis holds down
(killed or signalled, until its heal restarts them) are left alone. The exit itself is in the
worker's ``life`` ops (``ended``, ``code``, no ``signalled``); the ``workers`` checker judges it
(``exited``).
"""

from __future__ import annotations

import time
from collections.abc import Container, Sequence

from harness.services.workers import WorkerProcess

BACKOFF_FIRST = 0.1  # seconds before the first restart of a worker
BACKOFF_CAP = 2.0
RESET_AFTER = 10.0  # a process that ran this long resets the backoff


def backoff(exits: int) -> float:
    """Seconds before restarting a worker after its ``exits``-th exit in a row."""
    return float(min(BACKOFF_CAP, BACKOFF_FIRST * 2.0 ** max(0, exits - 1)))


class Supervisor:
    """Restarts the workers of a pool that exited on their own, each after its backoff."""

    def __init__(self) -> None:
        self._due: dict[str, float] = {}  # worker id -> when (monotonic) to restart it
        self._exits: dict[str, int] = {}  # worker id -> exits in a row
        self.restarts = 0

    def look(self, workers: Sequence[WorkerProcess], held: Container[str]) -> list[str]:
        """Restart every worker of ``workers`` that is not running, is not ``held`` by the
        nemesis, and has waited out its backoff; the ids restarted now."""
        now = time.monotonic()
        restarted = []
        for w in workers:
            if w.worker_id in held or w.running():
                self._due.pop(w.worker_id, None)
                continue
            due = self._due.get(w.worker_id)
            if due is None:  # a new exit: schedule its restart
                life = w.lives[-1]
                ran = (life.ended if life.ended is not None else time.time()) - life.started
                exits = 1 if ran >= RESET_AFTER else self._exits.get(w.worker_id, 0) + 1
                self._exits[w.worker_id] = exits
                self._due[w.worker_id] = now + backoff(exits)
            elif now >= due:
                del self._due[w.worker_id]
                w.restart()
                self.restarts += 1
                restarted.append(w.worker_id)
        return restarted
