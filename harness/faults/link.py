"""One proxied link and the faults it can inject, named for what the application sees.

Each operation injects at once and returns a `Fault`: a context manager whose exit heals
(healing also runs on errors, and `heal()` may be called directly; it is idempotent).
Every inject and heal is handed to the recorder, if any.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from harness.toxiproxy.client import Proxy, ToxiproxyClient

from .recorder import FaultRecorder

StreamChoice = Literal["upstream", "downstream", "both"]
_WILDCARDS = {"", "0.0.0.0", "::", "[::]"}


class Fault:
    """An injected fault; `heal()` (or leaving the `with` block) undoes it."""

    def __init__(
        self,
        link: FaultLink,
        fault_id: str,
        kind: str,
        params: Mapping[str, object],
        undo: Callable[[], None],
    ) -> None:
        self.link = link
        self.fault_id = fault_id
        self.kind = kind
        self.params = dict(params)
        self._undo = undo
        self.active = True

    def __repr__(self) -> str:
        state = "active" if self.active else "healed"
        return f"<Fault {self.fault_id} {self.kind} {self.params} {state}>"

    def heal(self) -> None:
        """Undo the fault (once) and record the heal, even when undoing fails."""
        if not self.active:
            return
        self.active = False
        error: BaseException | None = None
        try:
            self._undo()
        except BaseException as exc:
            error = exc
            raise
        finally:
            self.link._forget(self)
            extra = {"error": str(error)} if error is not None else {}
            self.link._record("heal", self, {**self.params, **extra})

    def __enter__(self) -> Fault:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.heal()


class FaultLink:
    """A named link (e.g. "redis") through one Toxiproxy proxy."""

    def __init__(
        self,
        client: ToxiproxyClient,
        name: str,
        proxy: Proxy,
        *,
        recorder: FaultRecorder | None = None,
    ) -> None:
        self.client = client
        self.name = name
        self.proxy_name = proxy.name
        self.upstream = proxy.upstream
        host = proxy.listen_host
        self.listen_host = client.host if host in _WILDCARDS else host
        self.listen_port = proxy.listen_port
        self.recorder = recorder
        self._ids = itertools.count(1)
        self._active: list[Fault] = []
        self._downs = 0

    def __repr__(self) -> str:
        return f"<FaultLink {self.name} {self.address} -> {self.upstream}>"

    # addresses -------------------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"{self.listen_host}:{self.listen_port}"

    def url(self, direct_url: str) -> str:
        """direct_url with its host:port replaced by the proxy's (user, path, query kept)."""
        parts = urlsplit(direct_url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@{self.address}" if userinfo else self.address
        return urlunsplit(parts._replace(netloc=netloc))

    def redis_url(self, db: int = 0) -> str:
        return f"redis://{self.address}/{db}"

    @property
    def active_faults(self) -> tuple[Fault, ...]:
        return tuple(self._active)

    # faults -------------------------------------------------------------------------------
    def down(self) -> Fault:
        """The link is cut: new connections refused, live ones closed (proxy disabled)."""

        def undo() -> None:
            self._downs -= 1
            if self._downs == 0:
                self.client.enable(self.proxy_name)

        if self._downs == 0:
            self.client.disable(self.proxy_name)
        self._downs += 1
        return self._register("down", {}, undo)

    def latency(self, ms: int, jitter: int = 0, *, stream: StreamChoice = "downstream") -> Fault:
        """Every chunk is delayed ms (+/- jitter) milliseconds."""
        return self._toxic("latency", "latency", {"latency": ms, "jitter": jitter}, stream)

    def blackhole(self, *, stream: StreamChoice = "both") -> Fault:
        """Data is silently dropped; connections stay open (until healed, which closes them)."""
        return self._toxic("blackhole", "timeout", {"timeout": 0}, stream)

    def idle_close(self, ms: int, *, stream: StreamChoice = "both") -> Fault:
        """Data is dropped and the connection is closed once no data arrived for ms."""
        return self._toxic("idle_close", "timeout", {"timeout": ms}, stream)

    def reset_peer(self, timeout_ms: int = 0, *, stream: StreamChoice = "downstream") -> Fault:
        """On the next data, wait timeout_ms then reset the connection (TCP RST)."""
        return self._toxic("reset_peer", "reset_peer", {"timeout": timeout_ms}, stream)

    def bandwidth(self, kb_per_s: int, *, stream: StreamChoice = "downstream") -> Fault:
        """Throughput capped at kb_per_s kilobytes (1000 bytes) per second."""
        return self._toxic("bandwidth", "bandwidth", {"rate": kb_per_s}, stream)

    def limit_data(self, nbytes: int, *, stream: StreamChoice = "downstream") -> Fault:
        """Each connection passes at most nbytes, then is closed."""
        return self._toxic("limit_data", "limit_data", {"bytes": nbytes}, stream)

    def slice(
        self,
        average_size: int,
        size_variation: int = 0,
        delay_us: int = 0,
        *,
        stream: StreamChoice = "downstream",
    ) -> Fault:
        """Data arrives in small pieces (average_size bytes), delay_us apart."""
        attrs = {"average_size": average_size, "size_variation": size_variation, "delay": delay_us}
        return self._toxic("slice", "slicer", attrs, stream)

    def heal_all(self) -> None:
        """Heal every active fault, then remove stray toxics and re-enable the proxy."""
        errors: list[BaseException] = []
        for fault in reversed(self._active):
            try:
                fault.heal()
            except Exception as exc:
                errors.append(exc)
        self._downs = 0
        for toxic in self.client.toxics(self.proxy_name):
            self.client.remove_toxic(self.proxy_name, toxic.name, missing_ok=True)
        if not self.client.proxy(self.proxy_name).enabled:
            self.client.enable(self.proxy_name)
        if errors:
            raise errors[0]

    # internals ----------------------------------------------------------------------------
    def _toxic(
        self, kind: str, toxic_type: str, attributes: dict[str, int], stream: StreamChoice
    ) -> Fault:
        streams: tuple[Literal["upstream", "downstream"], ...] = (
            ("upstream", "downstream") if stream == "both" else (stream,)
        )
        number = next(self._ids)
        names: list[str] = []

        def undo() -> None:
            for toxic_name in names:
                self.client.remove_toxic(self.proxy_name, toxic_name, missing_ok=True)

        try:
            for s in streams:
                toxic_name = f"jobchaos_{kind}_{number}_{s}"
                self.client.add_toxic(
                    self.proxy_name, toxic_type, attributes, name=toxic_name, stream=s
                )
                names.append(toxic_name)
        except BaseException:
            undo()
            raise
        params = {**attributes, "stream": stream, "toxics": list(names)}
        return self._register(kind, params, undo, number)

    def _register(
        self,
        kind: str,
        params: Mapping[str, object],
        undo: Callable[[], None],
        number: int | None = None,
    ) -> Fault:
        number = next(self._ids) if number is None else number
        fault = Fault(self, f"{self.name}:{kind}:{number}", kind, params, undo)
        self._active.append(fault)
        try:
            self._record("inject", fault, fault.params)
        except BaseException:
            fault.heal()
            raise
        return fault

    def _forget(self, fault: Fault) -> None:
        if fault in self._active:
            self._active.remove(fault)

    def _record(self, phase: Literal["inject", "heal"], fault: Fault, params: Mapping[str, object]) -> None:
        if self.recorder is not None:
            full = {**params, "proxy": self.proxy_name, "monotonic": time.monotonic()}
            self.recorder.record_fault(phase, fault.fault_id, self.name, fault.kind, full)
