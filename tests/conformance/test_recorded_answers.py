"""Answers recorded from a real Toxiproxy 2.12.0 run side by side with the embedded server.

Each test asserts what the real server answered (or, where marked, what its source does
for the same kind of request), so the same test keeps both servers honest.
"""

from __future__ import annotations

import json
import time

import pytest

from .conftest import Server, TcpServer, connect, recv_exactly, round_trip, wait_closed


def err(message: str, status: int) -> bytes:
    return json.dumps({"error": message, "status": status}, separators=(",", ":")).encode() + b"\n"


def add_toxic(server: Server, proxy: str, body: dict) -> dict:
    resp = server.request("POST", f"/proxies/{proxy}/toxics", body)
    assert resp.status == 200, resp.body
    made = resp.json()
    assert isinstance(made, dict)
    return made


# 1, 2: a `null` body decodes as "nothing given" ---------------------------------------

def test_populate_with_a_null_body_populates_nothing(server: Server) -> None:
    resp = server.request("POST", "/populate", raw=b"null")
    assert (resp.status, resp.body) == (201, b'{"proxies":null}')


def test_create_proxy_with_a_null_body_misses_the_name(server: Server) -> None:
    resp = server.request("POST", "/proxies", raw=b"null")
    assert (resp.status, resp.body) == (400, err("missing required field: name", 400))


def test_null_bodies_elsewhere_change_nothing(server: Server, echo_proxy: str) -> None:
    """From the real server's source: Decode(null) into its structs is a no-op."""
    before = server.request("GET", f"/proxies/{echo_proxy}").json()
    update = server.request("PATCH", f"/proxies/{echo_proxy}", raw=b"null")
    assert (update.status, update.json()) == (200, before)
    toxic = server.request("POST", f"/proxies/{echo_proxy}/toxics", raw=b"null")
    assert (toxic.status, toxic.body) == (400, err("invalid toxic type", 400))
    made = add_toxic(server, echo_proxy, {"type": "latency", "attributes": {"latency": 5}})
    same = server.request("PATCH", f"/proxies/{echo_proxy}/toxics/{made['name']}", raw=b"null")
    assert (same.status, same.json()) == (200, made)


# 3: Go's wording for JSON syntax errors -----------------------------------------------

@pytest.mark.parametrize(("raw", "detail"), [
    (b"{nope", "invalid character 'n' looking for beginning of object key string"),
    (b'{"name" "x"}', "invalid character '\"' after object key"),
    (b'{"name":"x" "upstream":"y"}', "invalid character '\"' after object key:value pair"),
    (b'{"name":[1 2]}', "invalid character '2' after array element"),
    (b'{"name":"x",}', "invalid character '}' looking for beginning of object key string"),
    (b"xyz", "invalid character 'x' looking for beginning of value"),
    (b"nope", "invalid character 'o' in literal null (expecting 'u')"),
    (b'{"name":', "unexpected EOF"),
    (b'{"name":"x', "unexpected EOF"),
])
def test_json_syntax_errors_read_like_go(server: Server, echo_proxy: str, raw: bytes,
                                         detail: str) -> None:
    expected = err(f"bad request body: {detail}", 400)
    create = server.request("POST", "/proxies", raw=raw)
    assert (create.status, create.body) == (400, expected)
    toxic = server.request("POST", f"/proxies/{echo_proxy}/toxics", raw=raw)
    assert (toxic.status, toxic.body) == (400, expected)


# 4: the stream is echoed as the client spelled it -------------------------------------

def test_toxic_stream_is_echoed_as_spelled(server: Server, echo_proxy: str) -> None:
    made = add_toxic(server, echo_proxy, {"type": "latency", "stream": "UPSTREAM",
                                          "attributes": {"latency": 100}})
    assert (made["name"], made["stream"]) == ("latency_UPSTREAM", "UPSTREAM")
    base = f"/proxies/{echo_proxy}/toxics"
    assert server.request("GET", base).json() == [made]
    assert server.request("GET", f"/proxies/{echo_proxy}").json()["toxics"] == [made]  # type: ignore[index]
    assert server.request("GET", f"{base}/latency_UPSTREAM").json() == made
    updated = server.request("PATCH", f"{base}/latency_UPSTREAM", {"toxicity": 1}).json()
    assert updated["stream"] == "UPSTREAM"  # type: ignore[index]
    with connect(server, echo_proxy) as sock:  # and it is an upstream toxic
        assert 0.100 <= round_trip(sock) < 0.6


# 5: unclean paths are redirected to the cleaned path ----------------------------------

@pytest.mark.parametrize(("method", "target", "location"), [
    ("GET", "//proxies", "/proxies"),
    ("GET", "/proxies/../version", "/version"),
    ("POST", "//proxies", "/proxies"),
    ("GET", "/./version?x=1", "/version?x=1"),
    ("GET", "//proxies//", "/proxies/"),
])
def test_unclean_paths_answer_301_to_the_cleaned_path(server: Server, method: str, target: str,
                                                      location: str) -> None:
    resp = server.request(method, target, raw=b"" if method == "POST" else None)
    assert (resp.status, resp.body, resp.headers.get("location")) == (301, b"", location)


# 6: harmless values are accepted and act like 0 ---------------------------------------

@pytest.mark.parametrize(("kind", "attributes"), [
    ("latency", {"latency": -100, "jitter": 0}),
    ("latency", {"latency": 0, "jitter": -5}),
    ("slow_close", {"delay": -1}),
    ("reset_peer", {"timeout": -1}),
    ("limit_data", {"bytes": -1}),
    ("timeout", {"timeout": -1}),
    ("slicer", {"average_size": 10, "size_variation": 10, "delay": 0}),
    ("slicer", {"average_size": 1, "size_variation": 1, "delay": 0}),
])
def test_harmless_values_are_accepted(server: Server, echo_proxy: str, kind: str,
                                      attributes: dict) -> None:
    made = add_toxic(server, echo_proxy, {"type": kind, "attributes": attributes})
    assert made["attributes"] == attributes


def test_negative_latency_and_jitter_add_no_delay(server: Server, echo_proxy: str) -> None:
    add_toxic(server, echo_proxy, {"type": "latency", "attributes": {"latency": -500}})
    add_toxic(server, echo_proxy, {"type": "latency", "stream": "upstream",
                                   "attributes": {"latency": 0, "jitter": -500}})
    with connect(server, echo_proxy) as sock:
        assert max(round_trip(sock) for _ in range(5)) < 0.1


@pytest.mark.parametrize("size", [10, 1])
def test_slicer_variation_equal_to_average_passes_64k_intact(
        server: Server, echo_proxy: str, size: int) -> None:
    add_toxic(server, echo_proxy, {"type": "slicer", "attributes": {
        "average_size": size, "size_variation": size, "delay": 0}})
    payload = bytes(range(256)) * 256
    with connect(server, echo_proxy, timeout=20) as sock:
        sock.sendall(payload)
        assert recv_exactly(sock, len(payload), deadline_s=20) == payload


def test_negative_limit_data_acts_like_zero(server: Server, echo_proxy: str) -> None:
    add_toxic(server, echo_proxy, {"type": "limit_data", "attributes": {"bytes": -1}})
    with connect(server, echo_proxy) as sock:
        sock.sendall(b"hello")
        sock.settimeout(2)
        assert sock.recv(10) == b""  # nothing passes; closed at the first chunk


def test_negative_timeout_acts_like_zero(server: Server, echo_proxy: str) -> None:
    add_toxic(server, echo_proxy, {"type": "timeout", "attributes": {"timeout": -1}})
    with connect(server, echo_proxy) as sock:
        sock.sendall(b"lost")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(10)  # data dropped, connection kept open


def test_negative_reset_peer_timeout_resets_at_once(server: Server, echo_proxy: str) -> None:
    add_toxic(server, echo_proxy, {"type": "reset_peer", "attributes": {"timeout": -1}})
    with connect(server, echo_proxy) as sock:
        start = time.monotonic()
        sock.sendall(b"x")
        assert wait_closed(sock, 2.0) is ConnectionResetError
        assert time.monotonic() - start < 0.5


def test_negative_slow_close_closes_at_once(server: Server, prefix: str) -> None:
    closer = TcpServer(lambda conn: None)  # accepts and closes at once
    try:
        server.client().create_proxy(f"{prefix}c", closer.address)
        add_toxic(server, f"{prefix}c", {"type": "slow_close", "attributes": {"delay": -1000}})
        with connect(server, f"{prefix}c") as sock:
            start = time.monotonic()
            assert wait_closed(sock, 3) is None
            assert time.monotonic() - start < 0.5
    finally:
        closer.close()

