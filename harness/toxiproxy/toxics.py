"""Toxic behaviours, one Stage per toxic per link (one direction of one connection).

A link pushes each chunk through its stages in order, one chunk at a time, so bytes are
never reordered. Waits are measured from the chunk's arrival time, which makes latency
pipelined as in the real server. A wait is cut short when its toxic is updated or removed,
and the held chunk moves on (no byte is dropped by a chain change).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Protocol

from .model import ToxicSpec


class Chunk:
    """Bytes read from a socket, stamped with their (loop) arrival time."""

    __slots__ = ("data", "ts")

    def __init__(self, data: bytes, ts: float) -> None:
        self.data = data
        self.ts = ts


Emit = Callable[[Chunk], Awaitable[None]]


class LinkControl(Protocol):
    """What a stage may do to the link it belongs to."""

    @property
    def rng(self) -> random.Random: ...

    def terminate(self, *, reset: bool = False) -> None:
        """Stop the link: drop what is queued and close (or reset) the connection."""


def _wake(fut: asyncio.Future[bool], value: bool) -> None:
    if not fut.done():
        fut.set_result(value)


class Stage:
    """One toxic inside one link: attributes snapshot, toxicity draw and state."""

    __slots__ = ("_waiter", "active", "attrs", "link", "loop", "removed", "spec")

    def __init__(self, spec: ToxicSpec, link: LinkControl, loop: asyncio.AbstractEventLoop) -> None:
        self.spec = spec
        self.link = link
        self.loop = loop
        self.removed = False
        self.active = False
        self.attrs: dict[str, int] = {}
        self._waiter: asyncio.Future[bool] | None = None

    def start(self) -> None:
        """(Re)draw toxicity and take the current attributes."""
        self.attrs = dict(self.spec.attributes)
        self.active = self.link.rng.random() < self.spec.toxicity
        self.on_start()

    def update(self) -> None:
        """The toxic changed: release any held chunk and start over with new values."""
        self.interrupt()
        self.on_stop()
        self.start()

    def remove(self) -> None:
        self.removed = True
        self.interrupt()
        self.on_stop()
        self.on_removed()

    def interrupt(self) -> None:
        if self._waiter is not None:
            _wake(self._waiter, False)

    async def sleep(self, seconds: float) -> bool:
        """Wait; False when interrupted (the caller then forwards what it holds)."""
        if seconds <= 0:
            return True
        fut: asyncio.Future[bool] = self.loop.create_future()
        self._waiter = fut
        handle = self.loop.call_later(seconds, _wake, fut, True)
        try:
            return await fut
        finally:
            handle.cancel()
            self._waiter = None

    def on_start(self) -> None:
        """Hook: the stage became live (timers start here)."""

    def on_stop(self) -> None:
        """Hook: the stage is updated or removed (timers stop here)."""

    def on_removed(self) -> None:
        """Hook: the toxic was removed from the chain."""

    async def pipe(self, chunk: Chunk, emit: Emit) -> None:
        await emit(chunk)

    async def eof(self) -> None:
        """The source ended; runs before the destination is closed."""


class Latency(Stage):
    __slots__ = ()

    async def pipe(self, chunk: Chunk, emit: Emit) -> None:
        delay = self.attrs.get("latency", 0)
        jitter = self.attrs.get("jitter", 0)
        if jitter > 0:
            delay += self.link.rng.randrange(jitter * 2) - jitter
        due = chunk.ts + delay / 1000.0
        if await self.sleep(due - self.loop.time()):
            chunk.ts = max(due, chunk.ts)
        else:
            chunk.ts = self.loop.time()
        await emit(chunk)


class Bandwidth(Stage):
    __slots__ = ("debt",)

    def on_start(self) -> None:
        self.debt = 0.0

    async def pipe(self, chunk: Chunk, emit: Emit) -> None:
        rate = self.attrs["rate"]  # KB/s == bytes per ms
        data = chunk.data
        self.debt += len(data) / (rate * 1000.0)
        piece = rate * 100  # what 100 ms allows
        while len(data) > piece:
            if not await self.sleep(0.1):
                await emit(Chunk(data, chunk.ts))
                self.debt = 0.0
                return
            await emit(Chunk(data[:piece], chunk.ts))
            data = data[piece:]
            self.debt -= 0.1
        started = self.loop.time()
        if not await self.sleep(self.debt):
            self.debt = 0.0
        else:
            self.debt -= self.loop.time() - started
        await emit(Chunk(data, chunk.ts))


class SlowClose(Stage):
    __slots__ = ()

    async def eof(self) -> None:
        await self.sleep(self.attrs.get("delay", 0) / 1000.0)


class Timeout(Stage):
    """Drops all data; with timeout > 0 closes after that long without incoming data."""

    __slots__ = ("_timer",)

    def on_start(self) -> None:
        self._timer: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        timeout = self.attrs.get("timeout", 0)
        if self.active and timeout > 0:
            self._timer = self.loop.call_later(timeout / 1000.0, self.link.terminate)

    def on_stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def on_removed(self) -> None:
        # The real server closes the links it was part of when the toxic goes away.
        self.link.terminate()

    async def pipe(self, chunk: Chunk, emit: Emit) -> None:
        self._arm()


class ResetPeer(Stage):
    """After the first chunk, waits `timeout` ms, then resets both sides (RST)."""

    __slots__ = ()

    async def pipe(self, chunk: Chunk, emit: Emit) -> None:
        if await self.sleep(self.attrs.get("timeout", 0) / 1000.0):
            self.link.terminate(reset=True)
        else:
            await emit(chunk)  # healed before the reset: nothing is lost


class Slicer(Stage):
    __slots__ = ()

    def _cuts(self, start: int, end: int, out: list[int]) -> None:
        average = self.attrs["average_size"]
        variation = self.attrs.get("size_variation", 0)
        if (end - start) - average <= variation:
            out.append(end)
            return
        mid = start + (end - start) // 2
        if variation > 0:
            mid += self.link.rng.randrange(variation * 2) - variation
        self._cuts(start, mid, out)
        self._cuts(mid, end, out)

    async def pipe(self, chunk: Chunk, emit: Emit) -> None:
        data = chunk.data
        cuts: list[int] = []
        self._cuts(0, len(data), cuts)
        delay = self.attrs.get("delay", 0) / 1_000_000.0
        start = 0
        for end in cuts:
            if end > start:  # size_variation == average_size may cut an empty piece
                await emit(Chunk(data[start:end], chunk.ts))
            start = end
            if delay > 0 and start < len(data) and not await self.sleep(delay):
                break
        if start < len(data):
            await emit(Chunk(data[start:], chunk.ts))


class LimitData(Stage):
    __slots__ = ("sent",)

    def __init__(self, spec: ToxicSpec, link: LinkControl, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(spec, link, loop)
        self.sent = 0  # kept across updates, as the real server keeps its state

    async def pipe(self, chunk: Chunk, emit: Emit) -> None:
        limit = self.attrs.get("bytes", 0)
        remaining = max(0, limit - self.sent)
        data = chunk.data[:remaining] if remaining < len(chunk.data) else chunk.data
        if data:
            self.sent += len(data)
            await emit(Chunk(data, chunk.ts))
        if limit - self.sent <= 0:
            self.link.terminate()


STAGES: dict[str, type[Stage]] = {
    "latency": Latency,
    "bandwidth": Bandwidth,
    "slow_close": SlowClose,
    "timeout": Timeout,
    "reset_peer": ResetPeer,
    "slicer": Slicer,
    "limit_data": LimitData,
    "noop": Stage,
}


def make_stage(spec: ToxicSpec, link: LinkControl, loop: asyncio.AbstractEventLoop) -> Stage:
    """A started stage for spec in link."""
    stage = STAGES[spec.type](spec, link, loop)
    stage.start()
    return stage
