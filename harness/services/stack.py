"""The stack one pytest process owns: Redis, PostgreSQL and the SMTP sink.

Each service is either embedded (started here, on a free 127.0.0.1 port) or external (run by
someone else, named by a URL; then the harness only waits for it). All embedded servers are
launched first and then awaited under one deadline, so the stack starts as fast as its slowest
server. Per-test isolation: a Redis logical database (embedded) or key namespace, and a
PostgreSQL database cloned from a template.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

from harness.config import Config
from harness.services.databases import DatabaseFactory
from harness.services.external import ExternalPostgres, ExternalRedis, ExternalSmtp
from harness.services.postgres import PostgresServer, find_pg_bindir, sweep_stale_runtime_dirs
from harness.services.redis import DATABASES, RedisServer
from harness.services.smtp import SinkMessage, SmtpSink


class Stack:
    """Redis + PostgreSQL + SMTP for one pytest process (or one pytest-xdist worker)."""

    def __init__(self, config: Config, workdir: Path, *, name: str = "main") -> None:
        self.config = config
        self.workdir = workdir
        self.name = name
        timeout = config.start_timeout
        self.redis: RedisServer | ExternalRedis = (
            ExternalRedis(config.redis_url, timeout) if config.redis_url
            else RedisServer(workdir, binary=config.redis_bin, start_timeout=timeout)
        )
        self.postgres: PostgresServer | ExternalPostgres = (
            ExternalPostgres(config.database_url, timeout) if config.database_url
            else PostgresServer(workdir, cache_dir=config.cache_dir,
                                bindir=find_pg_bindir(config.postgres_bin_dir),
                                system_user=config.pg_user,
                                start_timeout=timeout)
        )
        self.smtp: SmtpSink | ExternalSmtp = (
            ExternalSmtp(*config.smtp, timeout) if config.smtp
            else SmtpSink(workdir, start_timeout=timeout)
        )
        self.databases: DatabaseFactory | None = None
        self._redis_dbs = itertools.cycle(range(1, DATABASES))
        self._lock = threading.Lock()

    @property
    def services(self) -> tuple[RedisServer | ExternalRedis, PostgresServer | ExternalPostgres,
                                SmtpSink | ExternalSmtp]:
        return (self.redis, self.postgres, self.smtp)

    def start(self, schema_sql: str = "") -> Self:
        """Launch every embedded server, then wait for all of them under one deadline."""
        sweep_stale_runtime_dirs(
            self.postgres.user if isinstance(self.postgres, PostgresServer) else None)
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            for service in self.services:
                service.launch()
            deadline = time.monotonic() + self.config.start_timeout
            for service in self.services:
                service.wait_ready(deadline)
            admin = self.postgres.url("postgres") if isinstance(self.postgres, PostgresServer) \
                else self.postgres.admin_url
            self.databases = DatabaseFactory(admin, prefix=f"jobchaos_{self.name}")
            self.databases.create_template(schema_sql)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.databases is not None:
            if isinstance(self.postgres, ExternalPostgres):
                self.databases.drop_template()  # leave someone else's server as we found it
            self.databases.close()
        for service in self.services:
            service.stop()
        if isinstance(self.postgres, PostgresServer):
            self.postgres.remove_data()

    # -- per-test state ---------------------------------------------------------------
    def fresh_redis_url(self) -> str:
        """A Redis URL whose database no other test is using (flushed before handing out)."""
        if isinstance(self.redis, ExternalRedis):
            return self.redis.url()
        with self._lock:
            db = next(self._redis_dbs)
        import redis

        with redis.Redis(host=self.redis.host, port=self.redis.port, db=db) as client:
            client.flushdb()
        return self.redis.url(db)

    def clear_namespace(self, namespace: str) -> int:
        """Delete every key ``namespace`` or ``namespace:*`` from an external Redis (an
        embedded one gives each test a logical database of its own); return how many."""
        if not isinstance(self.redis, ExternalRedis):
            return 0
        import redis

        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", namespace) + ":*"
        client = redis.Redis.from_url(self.redis.url(), socket_timeout=10,
                                      socket_connect_timeout=5)
        with contextlib.closing(client):
            keys = [namespace.encode(), *client.scan_iter(match=pattern, count=1000)]
            deleted = 0
            for start in range(0, len(keys), 500):
                deleted += int(client.delete(*keys[start:start + 500]))
        return deleted

    def fresh_database(self) -> tuple[str, str]:
        """(name, URL) of a new database cloned from the template."""
        assert self.databases is not None, "start() first"
        name = self.databases.create()
        return name, self.databases.url(name)

    def drop_database(self, name: str) -> None:
        assert self.databases is not None
        self.databases.drop(name)

    def messages(self, since: int = 0) -> list[SinkMessage]:
        if not isinstance(self.smtp, SmtpSink):
            raise RuntimeError("messages are recorded only by the embedded SMTP sink; the "
                               "external SMTP server given by --jobchaos-smtp keeps its own")
        return self.smtp.messages(since)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class SinkView:
    """The SMTP sink as one test sees it: only messages received since the test began."""

    def __init__(self, stack: Stack) -> None:
        self.host = stack.smtp.host
        self.port = stack.smtp.port
        self._stack = stack
        self._since = len(stack.messages())

    def messages(self) -> list[SinkMessage]:
        return self._stack.messages(self._since)

    def wait_for(self, predicate: Callable[[list[SinkMessage]], bool],
                 timeout: float) -> list[SinkMessage]:
        assert isinstance(self._stack.smtp, SmtpSink)
        return self._stack.smtp.log.wait_for(predicate, timeout, since=self._since)
