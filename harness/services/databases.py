"""A fresh PostgreSQL database per test, cloned from a template database.

Works the same on the embedded server and on one someone else runs (external mode): it needs
only a superuser-or-CREATEDB URL. The template holds whatever schema the harness installs once
(``install``), so each test's database starts with it at the cost of a file copy.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import threading
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from harness.errors import ExternalServiceError

if TYPE_CHECKING:
    import psycopg

_SAFE = re.compile(r"[^a-z0-9_]")


def with_dbname(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


class DatabaseFactory:
    """Creates and drops per-test databases on one server."""

    def __init__(self, admin_url: str, *, prefix: str) -> None:
        self.admin_url = admin_url
        self.prefix = _SAFE.sub("_", prefix.lower())
        # One per session: two sessions on one external server must not drop each other's.
        self.template = f"{self.prefix}_{os.getpid()}_template"
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def _execute(self, sql: str) -> None:
        """Run admin SQL on one long-lived connection (re-opened if it broke).

        Keeping the backend matters: the first CREATE DATABASE in a new backend costs ~250 ms,
        later ones ~15-50 ms.
        """
        import psycopg

        with self._lock:
            for retry in (True, False):
                if self._conn is None or self._conn.closed or self._conn.broken:
                    self._conn = psycopg.connect(self.admin_url, autocommit=True,
                                                 connect_timeout=10)
                try:
                    self._conn.execute(sql)
                    return
                except psycopg.OperationalError:
                    # The server restarted under the connection (a scenario may restart
                    # it): once more on a new one.
                    self._conn.close()
                    if not retry:
                        raise

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def create_template(self, schema_sql: str = "") -> None:
        """(Re)create the template database, with ``schema_sql`` applied inside it."""
        import psycopg

        try:
            self._execute(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')
            self._execute(f'CREATE DATABASE "{self.template}"')
        except psycopg.errors.InsufficientPrivilege as exc:
            raise ExternalServiceError(
                f"cannot create databases on {self.admin_url}: {exc}. Fix: give that role "
                "CREATEDB (ALTER ROLE ... CREATEDB), or point the harness at a superuser URL."
            ) from exc
        if schema_sql:
            with psycopg.connect(self.url(self.template), autocommit=True) as conn:
                conn.execute(schema_sql)

    def drop_template(self) -> None:
        """Drop the template database (at the end of a session on someone else's server)."""
        import psycopg

        with contextlib.suppress(psycopg.Error):  # a server gone away: nothing more to do
            self._execute(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')

    def url(self, dbname: str) -> str:
        return with_dbname(self.admin_url, dbname)

    def create(self) -> str:
        """A new, empty-but-for-the-schema database; returns its name."""
        name = f"{self.prefix}_{os.getpid()}_{next(self._counter)}"
        # The default WAL_LOG strategy (PostgreSQL 15+) clones a small database in ~15 ms
        # with fsync off; FILE_COPY forces a checkpoint and takes ~250 ms.
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return name

    def drop(self, name: str) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
