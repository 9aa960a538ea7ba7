"""A proxy: a listener, its live connections, and its toxics per stream."""

from __future__ import annotations

import asyncio
import random

from . import addresses
from .link import Connection, Side
from .model import STREAMS, Stream, ToxicSpec


class Proxy:
    """One named proxy, listening on `listen` and dialling `upstream` per connection."""

    def __init__(self, name: str, listen: str, upstream: str, seed: int | None) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.enabled = False
        self.seed = seed
        self.toxics: dict[Stream, list[ToxicSpec]] = {"upstream": [], "downstream": []}
        self.connections: set[Connection] = set()
        self._server: asyncio.AbstractServer | None = None
        self._count = 0
        self._dials: set[asyncio.Task[None]] = set()

    # JSON ------------------------------------------------------------------------
    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": [toxic.to_json() for toxic in self.toxic_list()],
        }

    def toxic_list(self) -> list[ToxicSpec]:
        """Upstream chain first, then downstream, each in insertion order."""
        return [*self.toxics["upstream"], *self.toxics["downstream"]]

    # lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        """Listen (ApiError 500 when binding fails); no-op when already enabled."""
        if self.enabled:
            return
        sock, real = await addresses.bind(self.listen)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._accept, sock=sock)
        self.listen = real
        self.enabled = True

    def stop(self) -> None:
        """Close the listener (new connects are refused) and every live connection."""
        if not self.enabled:
            return
        self.enabled = False
        if self._server is not None:
            self._server.close()
            self._server = None
        for conn in list(self.connections):
            conn.close()
        self.connections.clear()

    async def differs(self, listen: str, upstream: str) -> bool:
        return self.listen != await addresses.resolved_string(listen) or self.upstream != upstream

    async def update(self, listen: str, upstream: str, enabled: bool) -> None:
        """Change address or state; a changed address restarts the proxy."""
        if await self.differs(listen, upstream):
            self.stop()
            self.listen, self.upstream = listen, upstream
        if enabled and not self.enabled:
            await self.start()
        elif not enabled:
            self.stop()

    # toxics ------------------------------------------------------------------------
    def find_toxic(self, name: str) -> ToxicSpec | None:
        for toxic in self.toxic_list():
            if toxic.name == name:
                return toxic
        return None

    def add_toxic(self, spec: ToxicSpec) -> None:
        self.toxics[spec.stream].append(spec)
        for conn in list(self.connections):
            link = conn.link(spec.stream)
            if link is not None:
                link.add(spec)

    def update_toxic(self, spec: ToxicSpec, attributes: dict[str, int], toxicity: float) -> None:
        spec.attributes = attributes
        spec.toxicity = toxicity
        for conn in list(self.connections):
            link = conn.link(spec.stream)
            if link is not None:
                link.update(spec.name)

    def remove_toxic(self, spec: ToxicSpec) -> None:
        self.toxics[spec.stream].remove(spec)
        for conn in list(self.connections):
            link = conn.link(spec.stream)
            if link is not None:
                link.remove(spec.name)

    def reset_toxics(self) -> None:
        for stream in STREAMS:
            for spec in list(self.toxics[stream]):
                self.remove_toxic(spec)

    # connections ---------------------------------------------------------------------
    def _rng(self, index: int, direction: str) -> random.Random:
        if self.seed is None:
            return random.Random()
        return random.Random(f"{self.seed}:{self.name}:{index}:{direction}")

    def _accept(self) -> Side:
        self._count += 1
        loop = asyncio.get_running_loop()
        conn = Connection(loop, self._count, self._rng, self.connections.discard)
        conn.client.pause("dial")
        self.connections.add(conn)
        task = loop.create_task(self._dial(conn))
        self._dials.add(task)
        task.add_done_callback(self._dials.discard)
        return conn.client

    async def _dial(self, conn: Connection) -> None:
        loop = asyncio.get_running_loop()
        try:
            host, port = addresses.split_host_port(self.upstream)
            await loop.create_connection(lambda: conn.upstream, host or "localhost", port)
        except (OSError, ValueError):
            # As the real server: the client's connect succeeded, now it sees EOF.
            conn.upstream.closed = conn.upstream.closing = True
            conn.client.close()
            self.connections.discard(conn)
            return
        if conn.client.closing or conn not in self.connections:
            conn.upstream.close(abort=True)
            return
        conn.join(self.toxics)
