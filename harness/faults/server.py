"""Which Toxiproxy server to use: a given URL, the real binary on PATH, or the embedded one."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from harness.toxiproxy.client import ToxiproxyClient, ToxiproxyUnavailable
from harness.toxiproxy.launcher import start_embedded, start_real

URL_ENV_VARS = ("JOBCHAOS_TOXIPROXY_URL", "TOXIPROXY_URL")


@dataclass(frozen=True, slots=True)
class ServerChoice:
    """Where the client points and why (shown in errors and reports)."""

    kind: str  # "external", "real", "embedded"
    url: str
    source: str


def url_from_env() -> tuple[str, str] | None:
    """(url, variable) from JOBCHAOS_TOXIPROXY_URL or TOXIPROXY_URL, if set."""
    for var in URL_ENV_VARS:
        value = os.environ.get(var, "").strip()
        if value:
            return value, var
    return None


def _not_absent(url: str, timeout: float) -> None:
    """Fail within ``REFUSED_GRACE`` s when nothing is there at all (connection refused,
    unknown host); a server that accepts is then given the whole ``timeout`` to answer."""
    from harness.services.external import REFUSED_GRACE, definite

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)
    started = time.monotonic()
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError as exc:
            if not definite(exc):
                return
            if time.monotonic() - started >= min(REFUSED_GRACE, timeout):
                raise
        time.sleep(0.1)


@contextlib.contextmanager
def toxiproxy_server(
    url: str | None = None,
    *,
    url_source: str = "argument",
    binary: str | None = None,
    seed: int | None = None,
    timeout: float = 15.0,
    log_path: Path | None = None,
) -> Iterator[tuple[ToxiproxyClient, ServerChoice]]:
    """Yield a client to a ready server, started here (and stopped after) unless url is given.

    Order: url (a server someone else runs), then `toxiproxy-server` (binary or PATH),
    then the embedded server (`python -m harness.toxiproxy`) on a free 127.0.0.1 port.
    """
    if url:
        client = ToxiproxyClient(url)
        try:
            _not_absent(url, timeout)
            client.wait_until_ready(timeout)
        except (ToxiproxyUnavailable, OSError) as exc:
            raise ToxiproxyUnavailable(
                f"reach the Toxiproxy server given by {url_source}",
                f"{url}: {type(exc).__name__ + ': ' if isinstance(exc, OSError) else ''}{exc}",
                f"Fix: start it, or unset {url_source} to use the embedded server",
            ) from None
        yield client, ServerChoice("external", client.url, url_source)
        return
    real = binary or shutil.which("toxiproxy-server")
    if real:
        with start_real(real, timeout=timeout, log_path=log_path) as proc:
            yield proc.client(), ServerChoice("real", proc.url, real)
        return
    with start_embedded(seed=seed, timeout=timeout, log_path=log_path) as proc:
        yield proc.client(), ServerChoice("embedded", proc.url, "python -m harness.toxiproxy")
