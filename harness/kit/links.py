"""The kit's PostgreSQL connections: opened on first use, reopened after a fork or an error.

A library that forks a job process after the kit connected must not share the parent's
socket: two processes talking over one PostgreSQL connection corrupt each other's replies.
:class:`Connection` remembers the process that opened it and, in any other process, opens a
new one and leaves the inherited one alone (never closed there: closing it would end the
parent's session; psycopg itself skips closing a connection made in another process).
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

T = TypeVar("T")

LINK_ERRORS: tuple[type[BaseException], ...] = (psycopg.OperationalError,
                                                psycopg.InterfaceError, OSError)
REPORT_PATIENCE = 10.0  # seconds a report keeps retrying a broken link (a server restart)
_inherited: list[Any] = []  # connections of a parent process: kept, never used nor closed


def connect(url: str, timeout: float) -> psycopg.Connection[Any]:
    """An autocommit connection that notices a dead link within about ``timeout`` seconds."""
    seconds = max(1, round(timeout))
    return psycopg.connect(url, autocommit=True, connect_timeout=seconds, prepare_threshold=None,
                           keepalives=1, keepalives_idle=1, keepalives_interval=1,
                           keepalives_count=seconds, tcp_user_timeout=seconds * 1000)


class Connection:
    """One lazily opened, fork-safe autocommit connection to ``url``."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._conn: psycopg.Connection[Any] | None = None
        self._pid = 0

    def get(self) -> psycopg.Connection[Any]:
        """The connection of this process (opened now if it has none, or the last one broke)."""
        if self._conn is not None and self._pid != os.getpid():
            _inherited.append(self._conn)  # the parent's: leave its socket alone
            self._conn = None
        if self._conn is not None and self._conn.closed:
            self._conn = None
        if self._conn is None:
            self._conn = connect(self.url, self.timeout)
            self._pid = os.getpid()
        return self._conn

    def run(self, operation: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``operation`` on the connection; after a link error the connection is dropped (the
        next call opens a new one) and the error raised."""
        try:
            return operation(self.get())
        except LINK_ERRORS:
            self.reset()
            raise

    def reset(self) -> None:
        """Drop the connection (closed if this process opened it)."""
        conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):  # a broken connection may fail to close
                conn.close()

    close = reset

    def patiently(self, operation: Callable[[psycopg.Connection[Any]], T], *,
                  patience: float = REPORT_PATIENCE) -> T:
        """:meth:`run` ``operation`` again after link errors (50 ms doubling to 1 s) for up to
        ``patience`` seconds, then raise the last error. For reports over the harness's
        unfaulted link, where an error means a server restart: a write whose reply was lost
        may be made twice."""
        end = time.monotonic() + patience
        failures = 0
        while True:
            try:
                return self.run(operation)
            except LINK_ERRORS:
                failures += 1
                delay = min(1.0, 0.05 * 2.0 ** (failures - 1)) * (0.5 + random.random() / 2)
                if time.monotonic() + delay > end:
                    raise
                time.sleep(delay)
