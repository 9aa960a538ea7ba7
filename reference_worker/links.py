"""Links to Redis, PostgreSQL and SMTP that survive the server going away.

A :class:`Link` hands out a connection and re-opens it after it broke. :func:`persist` runs one
operation until it succeeds, reconnecting with exponential backoff and a log line per failure;
the worker uses it for everything it must not skip (recording an outcome, settling a job), so a
cut link delays the work and never silently drops it.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import psycopg
import redis

from reference_worker import ledger
from reference_worker.log import log

T = TypeVar("T")
R = TypeVar("R")

REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError)
POSTGRES_ERRORS: tuple[type[BaseException], ...] = (psycopg.OperationalError,
                                                    psycopg.InterfaceError)
LINK_ERRORS = REDIS_ERRORS + POSTGRES_ERRORS + (OSError,)
RECONNECT_BASE = 0.05  # seconds before the first retry; doubles up to RECONNECT_CAP
RECONNECT_CAP = 1.0


class Abandoned(Exception):
    """:func:`persist` gave up because its ``stop`` condition became true."""


class Link(Generic[T]):
    """One lazily opened connection, closed and re-opened after an error."""

    def __init__(self, name: str, opener: Callable[[], T], closer: Callable[[T], None]) -> None:
        self.name = name
        self._open = opener
        self._close = closer
        self._conn: T | None = None

    def get(self) -> T:
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def reset(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close
                self._close(conn)

    def run(self, operation: Callable[[T], R]) -> R:
        try:
            return operation(self.get())
        except POSTGRES_ERRORS:
            self.reset()
            raise


def postgres_link(url: str, timeout: float) -> Link[psycopg.Connection[Any]]:
    return Link("postgres", lambda: ledger.connect(url, timeout), lambda c: c.close())


def retry_delay(failures: int) -> float:
    """Exponential backoff with jitter for reconnecting: 0.05 s, 0.1 s, ... up to 1 s."""
    return min(RECONNECT_CAP, RECONNECT_BASE * 2.0 ** (failures - 1)) * (0.5 + random.random() / 2)


def describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}"


def persist(what: str, operation: Callable[[], R], *, stop: Callable[[], bool] = lambda: False,
            sleep: Callable[[float], object] = time.sleep) -> R:
    """Run ``operation`` until it succeeds; raise :class:`Abandoned` once ``stop()`` is true."""
    failures = 0
    while True:
        try:
            result = operation()
        except LINK_ERRORS as exc:
            failures += 1
            delay = retry_delay(failures)
            log(f"{what}: link down ({describe(exc)}); retry {failures} in {delay:.2f} s")
        else:
            if failures:
                log(f"{what}: link back after {failures} failure(s)")
            return result
        if stop():
            raise Abandoned(what)
        sleep(delay)
        if stop():
            raise Abandoned(what)
