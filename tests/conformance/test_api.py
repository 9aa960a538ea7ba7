"""The HTTP API: status codes, bodies, defaults, ordering and populate semantics."""

from __future__ import annotations

import contextlib
import json
import socket

import pytest

from .conftest import Server, TcpServer, connect, round_trip

TOXIC_KEYS = ["attributes", "name", "type", "stream", "toxicity"]


def err(message: str, status: int) -> bytes:
    return json.dumps({"error": message, "status": status}, separators=(",", ":")).encode() + b"\n"


def new_proxy(server: Server, name: str, upstream: str = "127.0.0.1:1", **extra: object) -> dict:
    resp = server.request("POST", "/proxies",
                          {"name": name, "listen": "127.0.0.1:0", "upstream": upstream, **extra})
    assert resp.status == 201, resp.body
    body = resp.json()
    assert isinstance(body, dict)
    return body


def test_version(server: Server) -> None:
    resp = server.request("GET", "/version")
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.body.endswith(b"\n")
    version = json.loads(resp.body)["version"]
    if server.embedded:
        assert resp.body == b'{"version": "2.12.0"}\n'
    assert version


def test_empty_index_is_an_object(server: Server, prefix: str) -> None:
    resp = server.request("GET", "/proxies")
    assert resp.status == 200
    assert resp.headers["content-type"] == "application/json"
    if server.dedicated:
        assert resp.body == b"{}"
    else:
        assert isinstance(resp.json(), dict)


def test_create_returns_201_and_the_real_address(server: Server, prefix: str,
                                                 echo_server: TcpServer) -> None:
    resp = server.request("POST", "/proxies", {"name": f"{prefix}a", "listen": "localhost:0",
                                                "upstream": echo_server.address})
    assert resp.status == 201
    body = resp.json()
    assert isinstance(body, dict)
    assert {k: body[k] for k in ("name", "upstream", "enabled", "toxics")} == {
        "name": f"{prefix}a", "upstream": echo_server.address, "enabled": True, "toxics": []}
    host, _, port = body["listen"].rpartition(":")
    assert host == "127.0.0.1" and int(port) > 0
    with connect(server, f"{prefix}a") as sock:
        round_trip(sock)
    assert server.request("GET", f"/proxies/{prefix}a").json() == body


def test_create_errors(server: Server, prefix: str) -> None:
    new_proxy(server, f"{prefix}a")
    dup = server.request("POST", "/proxies", {"name": f"{prefix}a", "upstream": "127.0.0.1:1",
                                              "listen": "127.0.0.1:0"})
    assert (dup.status, dup.body) == (409, err("proxy already exists", 409))
    no_name = server.request("POST", "/proxies", {"upstream": "127.0.0.1:1"})
    assert (no_name.status, no_name.body) == (400, err("missing required field: name", 400))
    no_up = server.request("POST", "/proxies", {"name": f"{prefix}b"})
    assert (no_up.status, no_up.body) == (400, err("missing required field: upstream", 400))
    empty = server.request("POST", "/proxies", raw=b"")
    assert (empty.status, empty.body) == (400, err("bad request body: EOF", 400))
    bad = server.request("POST", "/proxies", raw=b"{nope")
    assert bad.status == 400
    assert json.loads(bad.body)["error"].startswith("bad request body: ")


def test_bind_conflict_is_a_500_with_the_os_error(server: Server, prefix: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        resp = server.request("POST", "/proxies", {"name": f"{prefix}a", "upstream": "x:1",
                                                   "listen": f"127.0.0.1:{port}"})
    assert resp.status == 500
    assert resp.body == err(f"listen tcp 127.0.0.1:{port}: bind: address already in use", 500)
    assert server.request("GET", f"/proxies/{prefix}a").status == 404


def test_keys_match_case_insensitively_and_unknown_fields_are_ignored(
        server: Server, prefix: str) -> None:
    resp = server.request("POST", "/proxies", {"NAME": f"{prefix}a", "Upstream": "127.0.0.1:1",
                                                "LISTEN": "127.0.0.1:0", "colour": "blue"})
    assert resp.status == 201
    assert resp.json()["name"] == f"{prefix}a"  # type: ignore[index]


def test_disabled_at_creation_keeps_the_given_listen(server: Server, prefix: str) -> None:
    body = new_proxy(server, f"{prefix}a", enabled=False)
    assert body["enabled"] is False
    assert body["listen"] == "127.0.0.1:0"


def test_index_is_keyed_by_name_in_sorted_order(server: Server, prefix: str) -> None:
    for name in ("b", "c", "a"):
        new_proxy(server, f"{prefix}{name}")
    text = server.request("GET", "/proxies").body.decode()
    positions = [text.index(f'"{prefix}{n}":') for n in "abc"]
    assert positions == sorted(positions)
    mine = {k for k in json.loads(text) if k.startswith(prefix)}
    assert mine == {f"{prefix}a", f"{prefix}b", f"{prefix}c"}


def test_not_found_method_not_allowed_and_browsers(server: Server, prefix: str) -> None:
    missing = server.request("GET", f"/proxies/{prefix}nope")
    assert (missing.status, missing.body) == (404, err("proxy not found", 404))
    for path in ("/nope", "/proxies/", "/version/"):
        resp = server.request("GET", path)
        assert (resp.status, resp.body) == (404, b"404 page not found\n"), path
    wrong = server.request("PUT", "/proxies")
    assert (wrong.status, wrong.body) == (405, b"")
    browser = server.request("GET", "/proxies", headers={"User-Agent": "Mozilla/5.0 (X11)"})
    assert (browser.status, browser.body) == (403, b"User agent not allowed\n")


def test_update_keeps_unsent_fields_and_toggles_enabled(
        server: Server, prefix: str, echo_server: TcpServer) -> None:
    created = new_proxy(server, f"{prefix}a", echo_server.address)
    listen = created["listen"]
    host, port = listen.rsplit(":", 1)
    down = server.request("PATCH", f"/proxies/{prefix}a", {"enabled": False})
    assert down.status == 200
    assert down.json() == {**created, "enabled": False}
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port)), timeout=2).close()
    up = server.request("POST", f"/proxies/{prefix}a", {"enabled": True})  # POST also updates
    assert up.status == 200
    assert up.json() == created  # same port again
    with connect(server, f"{prefix}a") as sock:
        round_trip(sock)
    assert server.request("PATCH", f"/proxies/{prefix}nope", {}).status == 404


def test_update_upstream_restarts_and_drops_connections(
        server: Server, prefix: str, echo_server: TcpServer) -> None:
    new_proxy(server, f"{prefix}a", echo_server.address)
    sock = connect(server, f"{prefix}a")
    round_trip(sock)
    other = TcpServer(lambda c: c.sendall(b"other"))
    try:
        resp = server.request("PATCH", f"/proxies/{prefix}a", {"upstream": other.address})
        assert resp.status == 200
        assert resp.json()["upstream"] == other.address  # type: ignore[index]
        sock.settimeout(3)
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(10) == b""
        with connect(server, f"{prefix}a") as fresh:
            fresh.settimeout(3)
            assert fresh.recv(10) == b"other"
    finally:
        sock.close()
        other.close()


def test_delete(server: Server, prefix: str) -> None:
    new_proxy(server, f"{prefix}a")
    resp = server.request("DELETE", f"/proxies/{prefix}a")
    assert (resp.status, resp.body) == (204, b"")
    again = server.request("DELETE", f"/proxies/{prefix}a")
    assert (again.status, again.body) == (404, err("proxy not found", 404))


def test_toxic_defaults_and_shape(server: Server, prefix: str) -> None:
    new_proxy(server, f"{prefix}a")
    resp = server.request("POST", f"/proxies/{prefix}a/toxics", {"type": "latency"})
    assert resp.status == 200  # not 201
    body = resp.json()
    assert isinstance(body, dict)
    assert list(body) == TOXIC_KEYS
    assert body == {"attributes": {"latency": 0, "jitter": 0}, "name": "latency_downstream",
                    "type": "latency", "stream": "downstream", "toxicity": 1}
    up = server.request("POST", f"/proxies/{prefix}a/toxics",
                        {"type": "slicer", "stream": "upstream", "toxicity": 0.5,
                         "attributes": {"average_size": 10}})
    assert up.json() == {"attributes": {"average_size": 10, "size_variation": 0, "delay": 0},
                         "name": "slicer_upstream", "type": "slicer", "stream": "upstream",
                         "toxicity": 0.5}
    attrs = {"noop": {}, "bandwidth": {"rate": 1}, "slow_close": {"delay": 0},
             "timeout": {"timeout": 0}, "reset_peer": {"timeout": 0}, "limit_data": {"bytes": 0}}
    for kind, attributes in attrs.items():
        made = server.request("POST", f"/proxies/{prefix}a/toxics",
                              {"type": kind, "attributes": attributes, "stream": "upstream"})
        assert made.status == 200, made.body
        assert made.json()["attributes"] == attributes  # type: ignore[index]


def test_toxic_errors(server: Server, prefix: str) -> None:
    new_proxy(server, f"{prefix}a")
    base = f"/proxies/{prefix}a/toxics"
    assert server.request("POST", base, {"type": "latency", "name": "x"}).status == 200
    dup = server.request("POST", base, {"type": "latency", "name": "x", "stream": "upstream"})
    assert (dup.status, dup.body) == (409, err("toxic already exists", 409))
    stream = server.request("POST", base, {"type": "latency", "stream": "sideways"})
    assert (stream.status, stream.body) == (
        400, err("stream was invalid, can be either upstream or downstream", 400))
    kind = server.request("POST", base, {"type": "explode"})
    assert (kind.status, kind.body) == (400, err("invalid toxic type", 400))
    float_attr = server.request("POST", base, {"type": "latency", "name": "f",
                                               "attributes": {"latency": 100.0}})
    assert float_attr.status == 400
    assert json.loads(float_attr.body)["error"].startswith("bad request body: ")
    empty = server.request("POST", base, raw=b"")
    assert (empty.status, empty.body) == (400, err("bad request body: EOF", 400))
    nope = server.request("POST", f"/proxies/{prefix}nope/toxics", {"type": "latency"})
    assert (nope.status, nope.body) == (404, err("proxy not found", 404))
    missing = server.request("GET", f"{base}/nope")
    assert (missing.status, missing.body) == (404, err("toxic not found", 404))
    assert server.request("PATCH", f"{base}/nope", {}).status == 404
    assert server.request("DELETE", f"{base}/nope").status == 404


def test_toxic_list_is_upstream_then_downstream_in_insertion_order(
        server: Server, prefix: str) -> None:
    new_proxy(server, f"{prefix}a")
    base = f"/proxies/{prefix}a/toxics"
    for name, stream in (("d1", "downstream"), ("u1", "upstream"), ("d2", "downstream"),
                         ("u2", "upstream")):
        assert server.request("POST", base, {"type": "noop", "name": name,
                                             "stream": stream}).status == 200
    listed = server.request("GET", base).json()
    assert [t["name"] for t in listed] == ["u1", "u2", "d1", "d2"]  # type: ignore[union-attr,index]
    proxy = server.request("GET", f"/proxies/{prefix}a").json()
    assert proxy["toxics"] == listed  # type: ignore[index]
    assert server.request("GET", f"/proxies/{prefix}b/toxics").status == 404


def test_toxic_update_merges_attributes_and_toxicity(server: Server, prefix: str) -> None:
    new_proxy(server, f"{prefix}a")
    base = f"/proxies/{prefix}a/toxics"
    server.request("POST", base, {"type": "latency", "name": "lat",
                                  "attributes": {"latency": 100, "jitter": 10}})
    resp = server.request("PATCH", f"{base}/lat", {"attributes": {"jitter": 5},
                                                   "stream": "upstream", "type": "timeout"})
    assert resp.status == 200
    assert resp.json() == {"attributes": {"latency": 100, "jitter": 5}, "name": "lat",
                           "type": "latency", "stream": "downstream", "toxicity": 1}
    resp = server.request("POST", f"{base}/lat", {"toxicity": 0.25})
    assert resp.json()["toxicity"] == 0.25  # type: ignore[index]
    assert resp.json()["attributes"] == {"latency": 100, "jitter": 5}  # type: ignore[index]
    assert server.request("GET", f"{base}/lat").json() == resp.json()
    gone = server.request("DELETE", f"{base}/lat")
    assert (gone.status, gone.body) == (204, b"")
    assert server.request("GET", base).json() == []


def test_populate_creates_in_order(server: Server, prefix: str) -> None:
    body = [{"name": f"{prefix}b", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"},
            {"name": f"{prefix}a", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:2",
             "enabled": False}]
    resp = server.request("POST", "/populate", body)
    assert resp.status == 201
    out = resp.json()
    assert list(out) == ["proxies"]  # type: ignore[arg-type]
    proxies = out["proxies"]  # type: ignore[index]
    assert [p["name"] for p in proxies] == [f"{prefix}b", f"{prefix}a"]
    assert [p["enabled"] for p in proxies] == [True, False]


def test_populate_keeps_identical_and_replaces_differing(server: Server, prefix: str) -> None:
    a = new_proxy(server, f"{prefix}a")
    b = new_proxy(server, f"{prefix}b")
    for name in ("a", "b"):
        server.request("POST", f"/proxies/{prefix}{name}/toxics", {"type": "latency"})
    resp = server.request("POST", "/populate", [
        {"name": f"{prefix}a", "listen": a["listen"], "upstream": a["upstream"]},
        {"name": f"{prefix}b", "listen": b["listen"], "upstream": "127.0.0.1:3"},
    ])
    assert resp.status == 201
    kept, replaced = resp.json()["proxies"]  # type: ignore[index]
    assert len(kept["toxics"]) == 1 and kept["listen"] == a["listen"]
    assert replaced["toxics"] == [] and replaced["upstream"] == "127.0.0.1:3"


def test_populate_validates_everything_first(server: Server, prefix: str) -> None:
    resp = server.request("POST", "/populate", [
        {"name": f"{prefix}a", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"},
        {"listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"},
    ])
    assert resp.status == 400
    assert resp.json() == {"error": "missing required field: name at proxy 2", "status": 400,
                           "proxies": None}
    assert server.request("GET", f"/proxies/{prefix}a").status == 404
    no_up = server.request("POST", "/populate", [{"name": f"{prefix}a"}])
    assert no_up.json()["error"] == "missing required field: upstream at proxy 1"  # type: ignore[index]
    empty = server.request("POST", "/populate", raw=b"")  # populate answers in its own shape
    assert (empty.status, empty.body) == (
        400, b'{"error":"bad request body: EOF","status":400,"proxies":null}')


def test_populate_stops_at_the_first_runtime_error(server: Server, prefix: str) -> None:
    resp = server.request("POST", "/populate", [
        {"name": f"{prefix}a", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"},
        {"name": f"{prefix}b", "listen": "nonsense", "upstream": "127.0.0.1:1"},
        {"name": f"{prefix}c", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"},
    ])
    assert resp.status == 500
    out = resp.json()
    assert isinstance(out, dict)
    assert list(out) == ["error", "status", "proxies"]
    assert out["status"] == 500 and "nonsense" in out["error"]
    assert [p["name"] for p in out["proxies"]] == [f"{prefix}a"]
    names = set(server.client().proxies())
    assert f"{prefix}a" in names and f"{prefix}b" not in names and f"{prefix}c" not in names


def test_populate_empty_list(server: Server) -> None:
    resp = server.request("POST", "/populate", [])
    assert (resp.status, resp.json()) == (201, {"proxies": None})


def test_reset_enables_everything_and_removes_toxics(
        server: Server, prefix: str, echo_server: TcpServer) -> None:
    new_proxy(server, f"{prefix}a", echo_server.address)
    server.request("POST", f"/proxies/{prefix}a/toxics", {"type": "latency"})
    server.request("PATCH", f"/proxies/{prefix}a", {"enabled": False})
    resp = server.request("POST", "/reset")
    assert (resp.status, resp.body) == (204, b"")
    proxy = server.request("GET", f"/proxies/{prefix}a").json()
    assert proxy["enabled"] is True and proxy["toxics"] == []  # type: ignore[index]
    with connect(server, f"{prefix}a") as sock:
        round_trip(sock)
