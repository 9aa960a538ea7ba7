"""Toxics with real traffic, with the real server's own tolerances (loosened upward only)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from .conftest import Server, TcpServer, connect, recv_exactly, round_trip, wait_closed


def add(server: Server, proxy: str, kind: str, stream: str = "downstream",
        toxicity: float = 1.0, **attributes: int) -> str:
    toxic = server.client().add_toxic(proxy, kind, attributes, stream=stream,  # type: ignore[arg-type]
                                      toxicity=toxicity, name=f"{kind}_{stream}_t")
    return toxic.name


def test_no_toxic_round_trip_is_fast(server: Server, echo_proxy: str) -> None:
    with connect(server, echo_proxy) as sock:
        assert min(round_trip(sock) for _ in range(20)) < 0.02


def test_latency_applies_to_live_connections(server: Server, echo_proxy: str) -> None:
    with connect(server, echo_proxy) as sock:
        round_trip(sock)
        add(server, echo_proxy, "latency", latency=100)
        elapsed = round_trip(sock)
        assert 0.100 <= elapsed < 0.6
        server.client().remove_toxic(echo_proxy, "latency_downstream_t")
        assert round_trip(sock) < 0.1


def test_latency_on_both_streams_adds_up(server: Server, echo_proxy: str) -> None:
    add(server, echo_proxy, "latency", latency=100)
    add(server, echo_proxy, "latency", "upstream", latency=50)
    with connect(server, echo_proxy) as sock:
        assert 0.150 <= round_trip(sock) < 0.7


def test_latency_jitter_stays_within_bounds(server: Server, echo_proxy: str) -> None:
    add(server, echo_proxy, "latency", latency=60, jitter=20)
    with connect(server, echo_proxy) as sock:
        times = [round_trip(sock) for _ in range(6)]
    assert all(0.040 <= t < 0.5 for t in times), times


def test_toxicity_zero_never_applies(server: Server, echo_proxy: str) -> None:
    add(server, echo_proxy, "latency", toxicity=0.0, latency=300)
    with connect(server, echo_proxy) as sock:
        assert round_trip(sock) < 0.2


def test_toxicity_is_drawn_per_connection_not_per_chunk(server: Server, echo_proxy: str) -> None:
    add(server, echo_proxy, "latency", toxicity=0.5, latency=60)
    for _ in range(3):
        with connect(server, echo_proxy) as sock:
            slow = [round_trip(sock) >= 0.06 for _ in range(4)]
        assert len(set(slow)) == 1, slow


def test_bandwidth_480kb_at_1000kb_per_s(server: Server, echo_proxy: str) -> None:
    add(server, echo_proxy, "bandwidth", rate=1000)
    payload = bytes(range(256)) * (480_000 // 256) + b"x" * (480_000 % 256)
    with connect(server, echo_proxy, timeout=10) as sock:
        start = time.monotonic()
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        got = recv_exactly(sock, len(payload), deadline_s=10)
        elapsed = time.monotonic() - start
        sender.join()
    assert got == payload
    assert 0.44 <= elapsed < 1.0, elapsed


def test_slow_close_delays_the_close(server: Server, prefix: str) -> None:
    closer = TcpServer(lambda conn: None)  # accepts and closes at once
    try:
        server.client().create_proxy(f"{prefix}c", closer.address)
        with connect(server, f"{prefix}c") as sock:
            start = time.monotonic()
            assert wait_closed(sock, 3) is None
            assert time.monotonic() - start < 0.15
        add(server, f"{prefix}c", "slow_close", delay=200)
        with connect(server, f"{prefix}c") as sock:
            start = time.monotonic()
            assert wait_closed(sock, 3) is None
            assert time.monotonic() - start >= 0.19
    finally:
        closer.close()


def test_timeout_zero_drops_data_and_keeps_the_connection(server: Server, echo_proxy: str) -> None:
    with connect(server, echo_proxy) as sock:
        add(server, echo_proxy, "timeout", timeout=0)
        sock.sendall(b"lost")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(10)  # nothing comes back, and no EOF either
        server.client().remove_toxic(echo_proxy, "timeout_downstream_t")
        wait_closed(sock, 1.0)  # removing the toxic closes the connection within 1 s


def test_timeout_closes_after_silence(server: Server, echo_proxy: str) -> None:
    add(server, echo_proxy, "timeout", timeout=200)
    with connect(server, echo_proxy) as sock:
        start = time.monotonic()
        sock.sendall(b"x")
        wait_closed(sock, 2.0)
        assert 0.15 <= time.monotonic() - start < 1.5


def test_reset_peer_sends_rst(server: Server, echo_proxy: str) -> None:
    add(server, echo_proxy, "reset_peer", timeout=100)
    with connect(server, echo_proxy) as sock:
        start = time.monotonic()
        sock.sendall(b"hello")
        assert wait_closed(sock, 2.0) is ConnectionResetError
        assert time.monotonic() - start < 0.1 + 0.5


def test_slicer_keeps_every_byte_in_order(server: Server, echo_proxy: str) -> None:
    add(server, echo_proxy, "slicer", average_size=10, size_variation=5, delay=100)
    payload = bytes(range(256)) * 8
    with connect(server, echo_proxy) as sock:
        sock.sendall(payload)
        assert recv_exactly(sock, len(payload)) == payload


def test_limit_data_closes_after_the_limit(server: Server, echo_proxy: str) -> None:
    add(server, echo_proxy, "limit_data", bytes=100)
    with connect(server, echo_proxy) as sock:
        sock.sendall(b"a" * 60)
        assert recv_exactly(sock, 60) == b"a" * 60
        sock.sendall(b"b" * 60)
        assert recv_exactly(sock, 40) == b"b" * 40
        assert wait_closed(sock, 2.0) is None


def test_limit_data_upstream_limits_what_the_server_gets(server: Server, prefix: str) -> None:
    received = bytearray()
    done = threading.Event()

    def collect(conn: socket.socket) -> None:
        while data := conn.recv(1024):
            received.extend(data)
        done.set()

    sink = TcpServer(collect)
    try:
        server.client().create_proxy(f"{prefix}s", sink.address)
        add(server, f"{prefix}s", "limit_data", "upstream", bytes=10)
        with connect(server, f"{prefix}s") as sock:
            sock.sendall(b"0123456789abcdef")
            assert done.wait(3)
        assert bytes(received) == b"0123456789"
    finally:
        sink.close()


def test_noop_does_nothing(server: Server, echo_proxy: str) -> None:
    add(server, echo_proxy, "noop")
    with connect(server, echo_proxy) as sock:
        assert round_trip(sock, b"same") < 0.2


def test_down_refuses_new_and_closes_live_connections(server: Server, echo_proxy: str) -> None:
    client = server.client()
    proxy = client.proxy(echo_proxy)
    live = connect(server, echo_proxy)
    try:
        round_trip(live)
        client.disable(echo_proxy)
        wait_closed(live, 2.0)  # EOF or reset, promptly
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((proxy.listen_host, proxy.listen_port), timeout=2).close()
        client.enable(echo_proxy)
        with connect(server, echo_proxy) as again:
            round_trip(again)
        assert client.proxy(echo_proxy).listen == proxy.listen
    finally:
        live.close()


def test_dead_upstream_gives_eof(server: Server, prefix: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    server.client().create_proxy(f"{prefix}d", f"127.0.0.1:{dead}")
    with connect(server, f"{prefix}d") as sock:
        start = time.monotonic()
        wait_closed(sock, 2.0)
        assert time.monotonic() - start < 0.5 + 0.5


def test_no_byte_lost_or_reordered_while_toxics_change(server: Server, echo_proxy: str) -> None:
    """65,535 sequence numbers through toxics added and removed repeatedly."""
    payload = b"".join(i.to_bytes(2, "big") for i in range(65535))
    client = server.client()
    stop = threading.Event()
    errors: list[BaseException] = []
    changes = [0]

    def churn() -> None:
        kinds = [("latency", {"latency": 5, "jitter": 5}), ("slicer", {"average_size": 64, "delay": 10}),
                 ("noop", {}), ("bandwidth", {"rate": 100_000})]
        try:
            while not stop.is_set():
                i = changes[0]
                kind, attrs = kinds[i % len(kinds)]
                stream = "upstream" if i % 2 else "downstream"
                client.add_toxic(echo_proxy, kind, attrs, name=f"churn{i}", stream=stream)  # type: ignore[arg-type]
                if i % 3 == 0:
                    client.update_toxic(echo_proxy, f"churn{i}", toxicity=0.5)
                client.remove_toxic(echo_proxy, f"churn{i}")
                changes[0] += 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def send() -> None:
        # Interleave: after every 4 writes, wait (bounded) for the toxics to change again.
        for n, start in enumerate(range(0, len(payload), 512)):
            if n % 4 == 0:
                seen, deadline = changes[0], time.monotonic() + 2
                while changes[0] == seen and time.monotonic() < deadline and not errors:
                    time.sleep(0.001)
            sock.sendall(payload[start:start + 512])

    with connect(server, echo_proxy, timeout=20) as sock:
        changer = threading.Thread(target=churn)
        changer.start()
        sender = threading.Thread(target=send)
        sender.start()
        try:
            got = recv_exactly(sock, len(payload), deadline_s=30)
        finally:
            stop.set()
            changer.join()
            sender.join()
    assert not errors, errors
    assert changes[0] >= 60
    assert got == payload
