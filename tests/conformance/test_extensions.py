"""Where the embedded server deliberately does better than the real one (skipped on it)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from harness.toxiproxy.launcher import start_embedded

from .conftest import Server, TcpServer, connect, round_trip, wait_closed

pytestmark = pytest.mark.usefixtures("embedded_only")


@pytest.mark.parametrize(("kind", "attributes", "allowed"), [
    ("bandwidth", {"rate": 0}, "rate=0 for bandwidth toxic: must be > 0 (KB/s): rate 0 "
     "stalls the link for good; use timeout to stop data"),
    ("bandwidth", {"rate": -5}, "rate=-5 for bandwidth toxic: must be > 0 (KB/s): a negative "
     "rate makes the real server panic and exit"),
    ("slicer", {"average_size": 0}, "average_size=0 for slicer toxic: must be > 0"),
    ("slicer", {"average_size": -3, "size_variation": -5},
     "average_size=-3 for slicer toxic: must be > 0"),
    ("slicer", {"average_size": 10, "size_variation": 11},
     "size_variation=11 for slicer toxic: must be <= average_size (10)"),
    ("slicer", {"average_size": 10, "size_variation": -10},
     "size_variation=-10 for slicer toxic: must be > -average_size (-10)"),
])
def test_inputs_that_break_the_real_server_are_400(
        server: Server, echo_proxy: str, kind: str, attributes: dict, allowed: str) -> None:
    resp = server.request("POST", f"/proxies/{echo_proxy}/toxics",
                          {"type": kind, "attributes": attributes})
    assert resp.status == 400
    assert json.loads(resp.body)["error"].startswith(f"invalid attribute {allowed}")
    assert server.client().toxics(echo_proxy) == []


def test_invalid_update_is_rejected_and_changes_nothing(server: Server, echo_proxy: str) -> None:
    client = server.client()
    client.add_toxic(echo_proxy, "bandwidth", {"rate": 100}, name="bw")
    resp = server.request("PATCH", f"/proxies/{echo_proxy}/toxics/bw", {"attributes": {"rate": 0}})
    assert resp.status == 400
    assert client.toxic(echo_proxy, "bw").attributes == {"rate": 100}


def test_reset_peer_resets_connections_opened_before_it(server: Server, echo_proxy: str) -> None:
    with connect(server, echo_proxy) as sock:
        round_trip(sock)
        server.client().add_toxic(echo_proxy, "reset_peer", {"timeout": 0})
        sock.sendall(b"x")
        assert wait_closed(sock, 2.0) is ConnectionResetError


def test_reset_peer_healed_before_its_timeout_loses_nothing(server: Server,
                                                            echo_proxy: str) -> None:
    client = server.client()
    with connect(server, echo_proxy) as sock:
        client.add_toxic(echo_proxy, "reset_peer", {"timeout": 5000}, stream="upstream")
        sock.sendall(b"held")
        client.remove_toxic(echo_proxy, "reset_peer_upstream")
        sock.settimeout(2)
        assert sock.recv(10) == b"held"


@pytest.fixture(scope="module")
def seeded(echo_server: TcpServer) -> Iterator[list[Server]]:
    """Three extra servers: two with seed 7 and one with seed 8."""
    procs = [start_embedded(seed=s) for s in (7, 7, 8)]
    try:
        yield [Server(p.url, True, True) for p in procs]
    finally:
        for p in procs:
            p.stop()


def _toxicity_pattern(server: Server, upstream: str, connections: int = 24) -> list[bool]:
    """Which connections drew a limit_data toxic of toxicity 0.5 (they get 1 byte, then EOF)."""
    client = server.client()
    client.delete_proxy("seeded", missing_ok=True)
    client.create_proxy("seeded", upstream)
    client.add_toxic("seeded", "limit_data", {"bytes": 1}, toxicity=0.5)
    pattern = []
    for _ in range(connections):
        with connect(server, "seeded") as sock:
            sock.sendall(b"ab")
            got = b""
            sock.settimeout(3)
            while len(got) < 2 and (chunk := sock.recv(2)):
                got += chunk
            pattern.append(got == b"a")
    return pattern


def test_seed_makes_toxicity_replayable(seeded: list[Server], echo_server: TcpServer) -> None:
    first, again, other = (_toxicity_pattern(s, echo_server.address) for s in seeded)
    assert first == again
    assert any(first) and not all(first)
    assert first != other


def _jitter_delays(server: Server, upstream: str) -> list[float]:
    client = server.client()
    client.delete_proxy("jitter", missing_ok=True)
    client.create_proxy("jitter", upstream)
    client.add_toxic("jitter", "latency", {"latency": 200, "jitter": 200})  # 0 to 400 ms
    with connect(server, "jitter") as sock:
        return [round_trip(sock) for _ in range(3)]


def test_seed_makes_jitter_replayable(seeded: list[Server], echo_server: TcpServer) -> None:
    first = _jitter_delays(seeded[0], echo_server.address)
    again = _jitter_delays(seeded[1], echo_server.address)
    assert all(abs(a - b) < 0.06 for a, b in zip(first, again, strict=True)), (first, again)


def test_bind_one_address_only(server: Server, prefix: str) -> None:
    proxy = server.client().create_proxy(f"{prefix}l", "127.0.0.1:1", listen="localhost:0")
    assert proxy.listen_host == "127.0.0.1"
    with pytest.raises(OSError), socket.create_connection(("::1", proxy.listen_port), 1):
        pass
