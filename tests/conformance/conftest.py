"""Conformance suite fixtures: one server URL, raw HTTP, and local TCP upstreams.

By default the suite starts its own embedded server; with TOXIPROXY_URL (or
JOBCHAOS_TOXIPROXY_URL) set it runs unchanged against that server, e.g. a real
`toxiproxy-server`. Tests create only proxies named with their own prefix and delete them.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from harness.faults.server import url_from_env
from harness.toxiproxy.client import ToxiproxyClient
from harness.toxiproxy.launcher import start_embedded


@dataclass(frozen=True)
class Resp:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


@dataclass(frozen=True)
class Server:
    url: str
    dedicated: bool  # started by this suite: nothing else lives on it
    embedded: bool  # our server (it says so in a Server header)

    def request(self, method: str, path: str, body: object = None, *,
                raw: bytes | None = None, headers: dict[str, str] | None = None) -> Resp:
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        try:
            conn.request(method, path, body=data, headers={"User-Agent": "conformance",
                                                            **(headers or {})})
            r = conn.getresponse()
            return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def client(self) -> ToxiproxyClient:
        return ToxiproxyClient(self.url)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    given = url_from_env()
    if given is not None:
        url = given[0]
        ToxiproxyClient(url).wait_until_ready(10)
        resp = Server(url, False, False).request("GET", "/version")
        yield Server(url, False, "jobchaos" in resp.headers.get("server", ""))
        return
    with start_embedded(seed=1234) as proc:
        yield Server(proc.url, True, True)


@pytest.fixture
def embedded_only(server: Server) -> None:
    if not server.embedded:
        pytest.skip("checks a deliberate improvement of the embedded server over the real one")


@pytest.fixture
def prefix(server: Server) -> Iterator[str]:
    """A name prefix for this test's proxies; they are all deleted afterwards."""
    name = f"conf{uuid.uuid4().hex[:8]}"
    yield name
    client = server.client()
    for proxy in client.proxies():
        if proxy.startswith(name):
            client.delete_proxy(proxy, missing_ok=True)


class TcpServer:
    """A threaded TCP server on 127.0.0.1 running handler(conn) per connection."""

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.conns: list[socket.socket] = []
        self._handler = handler
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        try:
            self._handler(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.close()


def _echo(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while data := conn.recv(65536):
        conn.sendall(data)


@pytest.fixture(scope="session")
def echo_server() -> Iterator[TcpServer]:
    srv = TcpServer(_echo)
    yield srv
    srv.close()


@pytest.fixture
def echo_proxy(server: Server, prefix: str, echo_server: TcpServer) -> str:
    """Name of a proxy in front of the echo server (listen 127.0.0.1:0)."""
    name = f"{prefix}_echo"
    server.client().create_proxy(name, echo_server.address)
    return name


def connect(server: Server, proxy: str, timeout: float = 5.0) -> socket.socket:
    p = server.client().proxy(proxy)
    sock = socket.create_connection((p.listen_host, p.listen_port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock: socket.socket, n: int, deadline_s: float = 5.0) -> bytes:
    sock.settimeout(deadline_s)
    buf = bytearray()
    end = time.monotonic() + deadline_s
    while len(buf) < n:
        if time.monotonic() > end:
            raise TimeoutError(f"got {len(buf)} of {n} bytes")
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def round_trip(sock: socket.socket, payload: bytes = b"ping") -> float:
    """Seconds for payload to come back through the echo server."""
    start = time.monotonic()
    sock.sendall(payload)
    assert recv_exactly(sock, len(payload)) == payload
    return time.monotonic() - start


def wait_closed(sock: socket.socket, deadline_s: float) -> type[BaseException] | None:
    """Read until EOF or an error, within deadline_s; returns the error type (None = EOF)."""
    sock.settimeout(deadline_s)
    end = time.monotonic() + deadline_s
    try:
        while time.monotonic() < end:
            if not sock.recv(65536):
                return None
    except TimeoutError:
        raise AssertionError(f"connection still open after {deadline_s}s") from None
    except OSError as exc:
        return type(exc)
    raise AssertionError(f"connection still open after {deadline_s}s")
