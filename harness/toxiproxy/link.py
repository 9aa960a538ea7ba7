"""Proxied connections: two sockets (sides) and two links (one per direction).

Fast path: a link without toxics writes each chunk straight to the other socket from
`data_received`, with transport-level flow control (pause reading the source while the
destination's buffer is full). Once a toxic exists a task drains a queue of stamped
chunks through the stages; when the chain is empty again and the queue drained, the link
returns to the fast path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
from collections import deque
from collections.abc import Callable, Iterable
from typing import Literal, cast

from .model import ToxicSpec
from .toxics import Chunk, Stage, make_stage

QUEUE_HIGH = 1 << 20  # pause the source above this many queued bytes
QUEUE_LOW = 256 << 10
WRITE_HIGH = 512 << 10
_LINGER_ZERO = struct.pack("ii", 1, 0)

Direction = Literal["upstream", "downstream"]
log = logging.getLogger("harness.toxiproxy")


class Side(asyncio.Protocol):
    """One socket of a proxied connection (client or upstream)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.transport: asyncio.Transport | None = None
        self.out: Link | None = None  # the link that reads from this side
        self.into: Link | None = None  # the link that writes to this side
        self.closed = False  # connection_lost happened
        self.closing = False  # we asked the transport to close
        self.write_paused = False
        self._pause_reasons: set[str] = set()
        self._drain: asyncio.Future[None] | None = None
        self._early: list[bytes] = []  # read before the links exist
        self._early_eof = False

    # asyncio.Protocol -------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # other loops' transports may not subclass it
        self.transport.set_write_buffer_limits(high=WRITE_HIGH)
        if self._pause_reasons:
            self.transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        link = self.out
        if link is None:
            self._early.append(data)
            self._pause_reasons.add("early")
            if self.transport is not None:
                self.transport.pause_reading()
            return
        if link.task is None and not link.dst.closing:
            link.fast.write(data)  # the fast path: no toxics, nothing queued
        else:
            link.feed(data)

    def eof_received(self) -> bool:
        if self.out is not None:
            self.out.feed_eof()
        else:
            self._early_eof = True
        return True  # keep our write side open until the other link closes it

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = self.closing = True
        self._release_drain()
        if self.out is not None:
            self.out.feed_eof()
        if self.into is not None:
            self.into.terminate()
        self.conn.side_lost()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.into is not None:
            self.into.src.pause("dst")

    def resume_writing(self) -> None:
        self.write_paused = False
        self._release_drain()
        if self.into is not None:
            self.into.src.resume("dst")

    # helpers ----------------------------------------------------------------
    def flush_early(self) -> None:
        """Hand what arrived before the links existed to the new outgoing link."""
        early, self._early = self._early, []
        if self.out is not None:
            for data in early:
                self.out.feed(data)
            if self._early_eof:
                self.out.feed_eof()
        self.resume("early")

    def pause(self, reason: str) -> None:
        if not self._pause_reasons and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self._pause_reasons.add(reason)

    def resume(self, reason: str) -> None:
        if reason not in self._pause_reasons:
            return
        self._pause_reasons.discard(reason)
        if not self._pause_reasons and self.transport is not None and not self.closed:
            self.transport.resume_reading()

    async def drained(self) -> None:
        if not self.write_paused or self.closed:
            return
        if self._drain is None:
            self._drain = asyncio.get_running_loop().create_future()
        await self._drain

    def _release_drain(self) -> None:
        if self._drain is not None:
            if not self._drain.done():
                self._drain.set_result(None)
            self._drain = None

    def close(self, *, reset: bool = False, abort: bool = False) -> None:
        """Close the socket: after buffered data (FIN), at once, or with RST (reset)."""
        transport = self.transport
        if transport is None or self.closed:
            self.closing = True
            return
        if reset:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
        if reset or abort:
            transport.abort()
        elif not self.closing:
            transport.close()
        self.closing = True


class Link:
    """One direction of one connection, with its own toxic stages."""

    __slots__ = (
        "_rng",
        "_wake",
        "chain",
        "closing",
        "conn",
        "direction",
        "dst",
        "eof",
        "fast",
        "loop",
        "queue",
        "queued",
        "src",
        "task",
    )

    def __init__(self, conn: Connection, direction: Direction, src: Side, dst: Side) -> None:
        self.conn = conn
        self.direction = direction
        self.src = src
        self.dst = dst
        self.loop = conn.loop
        assert dst.transport is not None
        self.fast: asyncio.Transport = dst.transport
        self.chain: tuple[Stage, ...] = ()
        self.queue: deque[Chunk] = deque()
        self.queued = 0
        self.eof = False
        self.closing = False
        self.task: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[None] | None = None
        self._rng: random.Random | None = None
        src.out = self
        dst.into = self

    @property
    def rng(self) -> random.Random:
        if self._rng is None:
            self._rng = self.conn.make_rng(self.direction)
        return self._rng

    # input --------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        if self.closing or self.dst.closing:
            return
        if self.task is None:
            self._write_now(data)
            return
        self.queue.append(Chunk(data, self.loop.time()))
        self.queued += len(data)
        if self.queued > QUEUE_HIGH:
            self.src.pause("queue")
        self._notify()

    def feed_eof(self) -> None:
        if self.eof:
            return
        self.eof = True
        if self.task is None:
            self.dst.close()
        else:
            self._notify()

    # chain changes ----------------------------------------------------------------
    def set_chain(self, specs: Iterable[ToxicSpec]) -> None:
        for spec in specs:
            self.add(spec)

    def add(self, spec: ToxicSpec) -> None:
        self.chain = (*self.chain, make_stage(spec, self, self.loop))
        self._ensure_task()

    def update(self, name: str) -> None:
        for stage in self.chain:
            if stage.spec.name == name:
                stage.update()

    def remove(self, name: str) -> None:
        kept = []
        for stage in self.chain:
            if stage.spec.name == name:
                stage.remove()
            else:
                kept.append(stage)
        self.chain = tuple(kept)
        self._notify()

    # ending ------------------------------------------------------------------------
    def terminate(self, *, reset: bool = False) -> None:
        """Drop queued data and close the destination (reset: both sides, with RST)."""
        if reset:
            self.conn.close(reset=True)
        if self.closing:
            return
        self.closing = True
        self.queue.clear()
        self.queued = 0
        self.dst.close()
        self._notify()

    def cancel(self) -> None:
        """The connection is gone: stop timers and the task, keep no data."""
        self.closing = True
        self.queue.clear()
        for stage in self.chain:
            stage.removed = True
            stage.interrupt()
            stage.on_stop()
        if self.task is not None:
            self.task.cancel()

    # the slow path ----------------------------------------------------------------------
    def _write_now(self, data: bytes) -> None:
        if not self.dst.closing:
            self.fast.write(data)

    def _ensure_task(self) -> None:
        if self.task is None and not self.closing:
            self.task = self.loop.create_task(self._run())

    def _notify(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _run(self) -> None:
        try:
            while not self.closing:
                if self.queue:
                    chunk = self.queue.popleft()
                    self.queued -= len(chunk.data)
                    if self.queued < QUEUE_LOW:
                        self.src.resume("queue")
                    await self._through(self.chain, 0, chunk)
                elif self.eof:
                    for stage in self.chain:
                        if not stage.removed and stage.active:
                            await stage.eof()
                    self.dst.close()
                    return
                elif not self.chain:
                    return
                else:
                    self._wake = self.loop.create_future()
                    await self._wake
                    self._wake = None
        except Exception:  # a bug must not let data bypass the toxics: drop the connection
            log.exception("toxiproxy: link %s of connection %d failed", self.direction,
                          self.conn.index)
            self.conn.close()
        finally:
            self.task = None
            self._wake = None

    async def _through(self, chain: tuple[Stage, ...], index: int, chunk: Chunk) -> None:
        while index < len(chain) and (chain[index].removed or not chain[index].active):
            index += 1
        if self.closing:
            return
        if index == len(chain):
            self._write_now(chunk.data)
            await self.dst.drained()
            return
        nxt = index + 1

        async def emit(piece: Chunk) -> None:
            await self._through(chain, nxt, piece)

        await chain[index].pipe(chunk, emit)


class Connection:
    """A client socket joined to an upstream socket by two links."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        index: int,
        rng_factory: Callable[[int, str], random.Random],
        on_closed: Callable[[Connection], None],
    ) -> None:
        self.loop = loop
        self.index = index
        self._rng_factory = rng_factory
        self._on_closed = on_closed
        self.client = Side(self)
        self.upstream = Side(self)
        self.links: dict[Direction, Link] = {}
        self.done = False

    def make_rng(self, direction: str) -> random.Random:
        return self._rng_factory(self.index, direction)

    def join(self, chains: dict[Direction, list[ToxicSpec]]) -> None:
        """Upstream is connected: build both links and start reading the client."""
        up = Link(self, "upstream", self.client, self.upstream)
        down = Link(self, "downstream", self.upstream, self.client)
        self.links = {"upstream": up, "downstream": down}
        up.set_chain(chains["upstream"])
        down.set_chain(chains["downstream"])
        self.client.flush_early()
        self.upstream.flush_early()
        self.client.resume("dial")

    def link(self, direction: Direction) -> Link | None:
        return self.links.get(direction)

    def close(self, *, reset: bool = False) -> None:
        """Close both sockets at once (with RST when reset)."""
        for link in self.links.values():
            link.cancel()
        self.client.close(reset=reset, abort=True)
        self.upstream.close(reset=reset, abort=True)

    def side_lost(self) -> None:
        if self.client.closed and self.upstream.closed and not self.done:
            self.done = True
            for link in self.links.values():
                link.cancel()
            self._on_closed(self)
