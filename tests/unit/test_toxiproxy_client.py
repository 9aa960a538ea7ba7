"""The typed client against a scripted HTTP server: formats, fallbacks, errors, timeouts."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness.toxiproxy.client import (
    ToxiproxyBadRequest,
    ToxiproxyClient,
    ToxiproxyConflict,
    ToxiproxyError,
    ToxiproxyNotFound,
    ToxiproxyUnavailable,
)

PROXY = b'{"name":"p","listen":"127.0.0.1:5","upstream":"u:1","enabled":false,"toxics":[],"Logger":{}}'
TOXIC = (b'{"attributes":{"latency":5,"jitter":0},"name":"t","type":"latency",'
         b'"stream":"downstream","toxicity":1}')


class Script:
    """Maps (method, path) to (status, body); records every request."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], tuple[int, bytes]] = {}
        self.seen: list[tuple[str, str, bytes]] = []


@pytest.fixture
def script() -> Iterator[tuple[Script, str]]:
    state = Script()

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            state.seen.append((self.command, self.path, body))
            status, out = state.routes.get((self.command, self.path), (404, b"404 page not found\n"))
            self.send_response(status)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = do_PATCH = do_DELETE = _any

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("body", "version"), [
    (b'{"version": "2.12.0"}\n', "2.12.0"),
    (b"2.1.4", "2.1.4"),
    (b"git\n", "git"),
])
def test_version_formats(script: tuple[Script, str], body: bytes, version: str) -> None:
    state, url = script
    state.routes[("GET", "/version")] = (200, body)
    assert ToxiproxyClient(url).version() == version


def test_patch_falls_back_to_post_once(script: tuple[Script, str]) -> None:
    state, url = script
    state.routes[("PATCH", "/proxies/p")] = (405, b"")
    state.routes[("POST", "/proxies/p")] = (200, PROXY)
    client = ToxiproxyClient(url)
    assert client.disable("p").enabled is False  # extra keys (Logger) tolerated
    assert client.disable("p").listen_port == 5
    methods = [m for m, _, _ in state.seen]
    assert methods == ["PATCH", "POST", "POST"]
    assert state.seen[-1][2] == b'{"enabled": false}'


def test_update_toxic_sends_only_what_changes(script: tuple[Script, str]) -> None:
    state, url = script
    state.routes[("PATCH", "/proxies/p/toxics/t")] = (200, TOXIC)
    toxic = ToxiproxyClient(url).update_toxic("p", "t", attributes={"latency": 5})
    assert toxic.attributes == {"latency": 5, "jitter": 0}
    assert state.seen[0][2] == b'{"attributes": {"latency": 5}}'


@pytest.mark.parametrize(("status", "cls"), [(400, ToxiproxyBadRequest), (404, ToxiproxyNotFound),
                                             (409, ToxiproxyConflict), (500, ToxiproxyError)])
def test_errors_are_one_line_with_what_tried_and_fix(
        script: tuple[Script, str], status: int, cls: type[ToxiproxyError]) -> None:
    state, url = script
    state.routes[("POST", "/proxies")] = (status, b'{"error":"it broke","status":%d}\n' % status)
    with pytest.raises(cls) as info:
        ToxiproxyClient(url).create_proxy("p", "u:1")
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith("toxiproxy: create proxy 'p' failed (POST ")
    assert f"-> HTTP {status}: it broke" in text and "); " in text
    assert info.value.status == status and info.value.message == "it broke"


def test_missing_ok(script: tuple[Script, str]) -> None:
    _, url = script
    client = ToxiproxyClient(url)
    client.delete_proxy("gone", missing_ok=True)
    client.remove_toxic("gone", "t", missing_ok=True)
    with pytest.raises(ToxiproxyNotFound):
        client.delete_proxy("gone")


def test_unreachable_server_says_how_to_fix() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = ToxiproxyClient(f"127.0.0.1:{port}", timeout=1)
    with pytest.raises(ToxiproxyUnavailable, match="TOXIPROXY_URL") as info:
        client.proxies()
    assert f"GET http://127.0.0.1:{port}/proxies, timeout 1s" in str(info.value)
    assert client.is_running() is False
    with pytest.raises(ToxiproxyUnavailable):
        client.wait_until_ready(0.1)


def test_read_timeout_is_enforced() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # accepts (kernel backlog) but never answers
        client = ToxiproxyClient(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.2)
        with pytest.raises(ToxiproxyUnavailable, match="timed out"):
            client.version()


def test_bad_url() -> None:
    with pytest.raises(ValueError, match="http://HOST:PORT"):
        ToxiproxyClient("ftp://x")
