"""Servers someone else runs (compose, CI service containers): the harness only waits for them."""

from __future__ import annotations

import contextlib
import errno
import socket
import time
from urllib.parse import urlsplit

from harness.errors import ExternalServiceError
from harness.services.databases import with_dbname
from harness.services.redis import ping
from harness.services.smtp import smtp_banner

REFUSED_GRACE = 2.0  # seconds of "nothing is there" before giving up (a server just starting
# in a container may refuse for a moment; one that is absent refuses for ever)
_NOT_THERE = (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH)
_NOT_THERE_TEXT = ("connection refused", "could not translate host name", "name or service not known",
                   "no route to host", "network is unreachable", "password authentication failed",
                   "does not exist", "invalid password", "invalid username-password", "wrongpass",
                   "noauth")


def definite(exc: BaseException) -> bool:
    """True when an error says nothing will answer there (as opposed to "not yet")."""
    if isinstance(exc, socket.gaierror):
        return True
    if isinstance(exc, OSError) and exc.errno in _NOT_THERE:
        return True
    text = str(exc).lower()
    return any(t in text for t in _NOT_THERE_TEXT)


class External:
    """A server at host:port that we did not start; ``wait_ready`` polls until it answers."""

    name = "external"
    how_to_set = ""

    def __init__(self, host: str, port: int, start_timeout: float) -> None:
        self.host = host
        self.port = port
        self.start_timeout = start_timeout
        self.server = None  # nothing of ours to stop or kill
        self.tcp = True  # False for a Unix socket: ready() alone tells

    def ready(self) -> bool:
        raise NotImplementedError

    def launch(self) -> None:
        """Nothing to start."""

    def wait_ready(self, deadline: float | None = None) -> External:
        """Poll until the server answers. A server that is not there (connection refused,
        unknown host, no route, or a login it rejects) fails after ``REFUSED_GRACE`` seconds
        of nothing else; one that accepts but does not answer is waited for until the
        deadline."""
        started = time.monotonic()
        if deadline is None:
            deadline = started + self.start_timeout
        last_error = "no answer"
        definite_since: float | None = None
        while True:
            try:
                self.reachable()
                if self.ready():
                    return self
                definite_since = None
            except Exception as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                if definite(exc):
                    definite_since = time.monotonic() if definite_since is None else definite_since
                else:
                    definite_since = None
            now = time.monotonic()
            if definite_since is not None and now - definite_since >= REFUSED_GRACE:
                raise ExternalServiceError(
                    f"external {self.name} at {self.host}:{self.port} is not there: "
                    f"{last_error} (for {now - started:.1f} s). Fix: start it, or correct "
                    f"{self.how_to_set}, or unset it to let the harness start its own."
                )
            if now >= deadline:
                raise ExternalServiceError(
                    f"external {self.name} at {self.host}:{self.port} did not answer within "
                    f"{self.start_timeout:.0f} s (last error: {last_error}). Fix: start it, or "
                    f"correct {self.how_to_set}, or unset it to let the harness start its own."
                )
            time.sleep(0.1)

    def reachable(self) -> None:
        """Raise the OSError of a plain TCP connect (refused, unknown host, unreachable)."""
        if self.tcp:
            socket.create_connection((self.host, self.port), timeout=1).close()

    def stop(self, timeout: float = 0) -> None:
        """Not ours to stop."""


class ExternalRedis(External):
    name = "redis"
    how_to_set = "--jobchaos-redis-url / JOBCHAOS_REDIS_URL"

    def __init__(self, url: str, start_timeout: float) -> None:
        parts = urlsplit(url)
        super().__init__(parts.hostname or "127.0.0.1", parts.port or 6379, start_timeout)
        self.base_url = url
        self.tcp = parts.scheme != "unix" and parts.hostname is not None

    def ready(self) -> bool:
        if self.base_url.startswith("redis://") and "@" not in self.base_url:
            return ping(self.host, self.port)
        import redis

        client = redis.Redis.from_url(self.base_url, socket_timeout=1, socket_connect_timeout=1)
        with contextlib.closing(client):
            return bool(client.ping())

    def url(self, db: int | None = None) -> str:
        return self.base_url


class ExternalPostgres(External):
    name = "postgres"
    how_to_set = "--jobchaos-database-url / JOBCHAOS_DATABASE_URL"

    def __init__(self, url: str, start_timeout: float) -> None:
        parts = urlsplit(url)
        super().__init__(parts.hostname or "127.0.0.1", parts.port or 5432, start_timeout)
        self.admin_url = url
        self.tcp = parts.hostname is not None

    def ready(self) -> bool:
        import psycopg

        with psycopg.connect(self.admin_url, connect_timeout=1) as conn:
            conn.execute("SELECT 1")
        return True

    def url(self, dbname: str) -> str:
        return with_dbname(self.admin_url, dbname)


class ExternalSmtp(External):
    name = "smtp"
    how_to_set = "--jobchaos-smtp / JOBCHAOS_SMTP"

    def ready(self) -> bool:
        return smtp_banner(self.host, self.port)

