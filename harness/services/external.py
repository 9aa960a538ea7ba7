"""Servers someone else runs (compose, CI service containers): the harness only waits for them."""

from __future__ import annotations

import contextlib
import time
from urllib.parse import urlsplit

from harness.errors import ExternalServiceError
from harness.services.databases import with_dbname
from harness.services.redis import ping
from harness.services.smtp import smtp_banner


class External:
    """A server at host:port that we did not start; ``wait_ready`` polls until it answers."""

    name = "external"
    how_to_set = ""

    def __init__(self, host: str, port: int, start_timeout: float) -> None:
        self.host = host
        self.port = port
        self.start_timeout = start_timeout
        self.server = None  # nothing of ours to stop or kill

    def ready(self) -> bool:
        raise NotImplementedError

    def launch(self) -> None:
        """Nothing to start."""

    def wait_ready(self, deadline: float | None = None) -> External:
        if deadline is None:
            deadline = time.monotonic() + self.start_timeout
        last_error = "no answer"
        while True:
            try:
                if self.ready():
                    return self
            except Exception as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise ExternalServiceError(
                    f"external {self.name} at {self.host}:{self.port} did not answer within "
                    f"{self.start_timeout:.0f} s (last error: {last_error}). Fix: start it, or "
                    f"correct {self.how_to_set}, or unset it to let the harness start its own."
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 0) -> None:
        """Not ours to stop."""


class ExternalRedis(External):
    name = "redis"
    how_to_set = "--jobchaos-redis-url / JOBCHAOS_REDIS_URL"

    def __init__(self, url: str, start_timeout: float) -> None:
        parts = urlsplit(url)
        super().__init__(parts.hostname or "127.0.0.1", parts.port or 6379, start_timeout)
        self.base_url = url

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

