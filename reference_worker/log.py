"""Log lines with a fixed prefix, ``reference_worker[worker-1]: ...``, to stderr.

Each line is one ``os.write`` to fd 2: no locks, so it is safe in a forked job child even if
another thread of the parent was logging at the moment of the fork.
"""

from __future__ import annotations

import contextlib
import os
import time

_prefix = "reference_worker"


def set_worker(worker_id: str) -> None:
    global _prefix
    _prefix = f"reference_worker[{worker_id}]"


def log(message: str) -> None:
    now = time.time()
    stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
    line = f"{_prefix}: {stamp} {message}\n".encode(errors="replace")
    with contextlib.suppress(OSError):  # stderr closed: logging must never stop the worker
        os.write(2, line)
