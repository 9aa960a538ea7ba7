"""Typed client for any Toxiproxy v2 server (the real one or the embedded one).

Every request has an explicit timeout; updates use PATCH and fall back to POST for older
servers; `/version` is read in both its JSON and its plain-text form. Errors are one line:
what failed, what was tried, how to fix it.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote, urlsplit

Stream = Literal["upstream", "downstream"]
DEFAULT_URL = "http://127.0.0.1:8474"


@dataclass(frozen=True, slots=True)
class Toxic:
    name: str
    type: str
    stream: str
    toxicity: float
    attributes: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Toxic:
        attrs = data.get("attributes") or {}
        assert isinstance(attrs, dict)
        return cls(
            name=str(data["name"]),
            type=str(data["type"]),
            stream=str(data.get("stream", "downstream")),
            toxicity=float(data.get("toxicity", 1.0)),  # type: ignore[arg-type]
            attributes={str(k): int(v) for k, v in attrs.items()},
        )


@dataclass(frozen=True, slots=True)
class Proxy:
    name: str
    listen: str
    upstream: str
    enabled: bool
    toxics: tuple[Toxic, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Proxy:
        toxics = data.get("toxics") or []
        assert isinstance(toxics, list)
        return cls(
            name=str(data["name"]),
            listen=str(data["listen"]),
            upstream=str(data["upstream"]),
            enabled=bool(data.get("enabled", True)),
            toxics=tuple(Toxic.from_json(t) for t in toxics),
        )

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class ToxiproxyError(Exception):
    """A request failed; `str()` is one line: what failed, what was tried, how to fix."""

    def __init__(
        self, what: str, tried: str, fix: str, status: int | None = None, message: str = ""
    ) -> None:
        super().__init__(f"toxiproxy: {what} failed ({tried}); {fix}")
        self.status = status
        self.message = message


class ToxiproxyUnavailable(ToxiproxyError):
    """No server answered (refused, timed out, or not speaking HTTP)."""


class ToxiproxyNotFound(ToxiproxyError):
    pass


class ToxiproxyConflict(ToxiproxyError):
    pass


class ToxiproxyBadRequest(ToxiproxyError):
    pass


_FIXES = {
    400: "check the fields sent (types, toxic type, stream, attribute values)",
    404: "check the proxy/toxic name (list them with GET /proxies)",
    409: "it exists already: delete it first, or use populate to create-or-keep",
    405: "the server does not support this call; is it a Toxiproxy v2 server?",
    500: "see the server's log; a bind error means the listen address is taken",
}
_CLASSES: dict[int, type[ToxiproxyError]] = {
    400: ToxiproxyBadRequest,
    404: ToxiproxyNotFound,
    409: ToxiproxyConflict,
}


class ToxiproxyClient:
    """Client for one server; `timeout` (seconds) bounds each connect and each read."""

    def __init__(self, url: str = DEFAULT_URL, *, timeout: float = 5.0) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"toxiproxy URL must look like http://HOST:PORT, got {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 8474
        self.url = f"http://{parts.netloc}"
        self.timeout = timeout
        self._patch = True

    def __repr__(self) -> str:
        return f"ToxiproxyClient({self.url!r}, timeout={self.timeout})"

    # transport ---------------------------------------------------------------------
    def _request(
        self, method: str, path: str, what: str, body: object = None, *, timeout: float | None = None
    ) -> tuple[int, str, bytes]:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"User-Agent": "jobchaos-toxiproxy-client/1", "Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        limit = self.timeout if timeout is None else timeout
        conn = http.client.HTTPConnection(self.host, self.port, timeout=limit)
        tried = f"{method} {self.url}{path}, timeout {limit:g}s"
        try:
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, response.getheader("Content-Type", ""), data
        except (OSError, http.client.HTTPException) as exc:
            reason = "timed out" if isinstance(exc, socket.timeout) else str(exc) or type(exc).__name__
            raise ToxiproxyUnavailable(
                what,
                f"{tried}: {reason}",
                "start a server (python -m harness.toxiproxy --port PORT) or point "
                "TOXIPROXY_URL / --toxiproxy-url at a running one",
            ) from None
        finally:
            conn.close()

    def _call(
        self, method: str, path: str, what: str, body: object = None, ok: tuple[int, ...] = (200,)
    ) -> object:
        status, _, data = self._request(method, path, what, body)
        if status in ok:
            return json.loads(data) if data.strip() else None
        raise self._error(what, f"{method} {self.url}{path} -> HTTP {status}", status, data)

    def _error(self, what: str, tried: str, status: int, data: bytes) -> ToxiproxyError:
        text = data.decode(errors="replace").strip()
        try:
            parsed = json.loads(text)
            message = str(parsed.get("error", text)) if isinstance(parsed, dict) else text
        except ValueError:
            message = text
        cls = _CLASSES.get(status, ToxiproxyError)
        fix = _FIXES.get(status, "see the server's log")
        detail = f"{tried}: {message}" if message else tried
        return cls(what, detail, fix, status=status, message=message)

    def _update(self, path: str, what: str, body: object) -> object:
        if self._patch:
            status, _, data = self._request("PATCH", path, what, body)
            if status != 405:
                if status == 200:
                    return json.loads(data)
                raise self._error(what, f"PATCH {self.url}{path} -> HTTP {status}", status, data)
            self._patch = False  # older servers only take POST for updates
        return self._call("POST", path, what, body)

    # server ------------------------------------------------------------------------
    def version(self) -> str:
        """The server's version, from `{"version": "..."}` or a plain-text body."""
        status, _, data = self._request("GET", "/version", "read version")
        if status != 200:
            raise self._error("read version", f"GET {self.url}/version", status, data)
        text = data.decode(errors="replace").strip()
        if text.startswith("{"):
            parsed = json.loads(text)
            if isinstance(parsed, dict) and "version" in parsed:
                return str(parsed["version"])
        return text

    def is_running(self) -> bool:
        try:
            self.version()
        except ToxiproxyError:
            return False
        return True

    def wait_until_ready(self, timeout: float = 10.0) -> str:
        """Poll /version until it answers or the deadline passes; returns the version."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.version()
            except ToxiproxyUnavailable:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.02)

    def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        self._call("POST", "/reset", "reset", ok=(204,))

    # proxies -----------------------------------------------------------------------
    def proxies(self) -> dict[str, Proxy]:
        data = self._call("GET", "/proxies", "list proxies")
        assert isinstance(data, dict)
        return {name: Proxy.from_json(p) for name, p in data.items()}

    def proxy(self, name: str) -> Proxy:
        return self._proxy(self._call("GET", _p(name), f"get proxy {name!r}"))

    def create_proxy(
        self, name: str, upstream: str, listen: str = "127.0.0.1:0", *, enabled: bool = True
    ) -> Proxy:
        body = {"name": name, "listen": listen, "upstream": upstream, "enabled": enabled}
        return self._proxy(self._call("POST", "/proxies", f"create proxy {name!r}", body, (201,)))

    def update_proxy(
        self,
        name: str,
        *,
        listen: str | None = None,
        upstream: str | None = None,
        enabled: bool | None = None,
    ) -> Proxy:
        body: dict[str, object] = {}
        for key, value in (("listen", listen), ("upstream", upstream), ("enabled", enabled)):
            if value is not None:
                body[key] = value
        return self._proxy(self._update(_p(name), f"update proxy {name!r}", body))

    def enable(self, name: str) -> Proxy:
        return self.update_proxy(name, enabled=True)

    def disable(self, name: str) -> Proxy:
        return self.update_proxy(name, enabled=False)

    def delete_proxy(self, name: str, *, missing_ok: bool = False) -> None:
        try:
            self._call("DELETE", _p(name), f"delete proxy {name!r}", ok=(204,))
        except ToxiproxyNotFound:
            if not missing_ok:
                raise

    def populate(self, proxies: Iterable[Mapping[str, object]]) -> list[Proxy]:
        """Create-or-keep proxies in one call (identical ones kept, differing replaced)."""
        data = self._call("POST", "/populate", "populate", list(proxies), (201,))
        assert isinstance(data, dict)
        return [Proxy.from_json(p) for p in data.get("proxies") or []]

    # toxics ------------------------------------------------------------------------
    def toxics(self, proxy: str) -> list[Toxic]:
        data = self._call("GET", f"{_p(proxy)}/toxics", f"list toxics of {proxy!r}")
        assert isinstance(data, list)
        return [Toxic.from_json(t) for t in data]

    def toxic(self, proxy: str, name: str) -> Toxic:
        path = f"{_p(proxy)}/toxics/{quote(name, safe='')}"
        return self._toxic(self._call("GET", path, f"get toxic {name!r} of {proxy!r}"))

    def add_toxic(
        self,
        proxy: str,
        type: str,
        attributes: Mapping[str, int] | None = None,
        *,
        name: str | None = None,
        stream: Stream = "downstream",
        toxicity: float = 1.0,
    ) -> Toxic:
        body: dict[str, object] = {
            "type": type,
            "stream": stream,
            "toxicity": toxicity,
            "attributes": dict(attributes or {}),
        }
        if name is not None:
            body["name"] = name
        what = f"add {type} toxic to {proxy!r}"
        return self._toxic(self._call("POST", f"{_p(proxy)}/toxics", what, body))

    def update_toxic(
        self,
        proxy: str,
        name: str,
        *,
        attributes: Mapping[str, int] | None = None,
        toxicity: float | None = None,
    ) -> Toxic:
        body: dict[str, object] = {}
        if attributes is not None:
            body["attributes"] = dict(attributes)
        if toxicity is not None:
            body["toxicity"] = toxicity
        path = f"{_p(proxy)}/toxics/{quote(name, safe='')}"
        return self._toxic(self._update(path, f"update toxic {name!r} of {proxy!r}", body))

    def remove_toxic(self, proxy: str, name: str, *, missing_ok: bool = False) -> None:
        path = f"{_p(proxy)}/toxics/{quote(name, safe='')}"
        try:
            self._call("DELETE", path, f"remove toxic {name!r} of {proxy!r}", ok=(204,))
        except ToxiproxyNotFound:
            if not missing_ok:
                raise

    @staticmethod
    def _proxy(data: object) -> Proxy:
        assert isinstance(data, dict)
        return Proxy.from_json(data)

    @staticmethod
    def _toxic(data: object) -> Toxic:
        assert isinstance(data, dict)
        return Toxic.from_json(data)


def _p(name: str) -> str:
    return f"/proxies/{quote(name, safe='')}"
