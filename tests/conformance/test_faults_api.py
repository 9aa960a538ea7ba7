"""The faults API (harness.faults) against the suite's server, and the `faults` fixture."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from harness.faults import Fault, FaultLink, Faults, ListRecorder, create_links

from .conftest import Server, TcpServer, round_trip, wait_closed


@pytest.fixture
def recorder() -> ListRecorder:
    return ListRecorder()


@pytest.fixture
def links(server: Server, prefix: str, echo_server: TcpServer,
          recorder: ListRecorder) -> Iterator[Faults]:
    faults = create_links(server.client(), {"echo": echo_server.address}, prefix=prefix,
                          recorder=recorder)
    yield faults
    faults.heal_all()


def dial(link: FaultLink) -> socket.socket:
    sock = socket.create_connection((link.listen_host, link.listen_port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def toxics(link: FaultLink) -> list[tuple[str, str, dict[str, int]]]:
    return [(t.type, t.stream, dict(t.attributes)) for t in link.client.toxics(link.proxy_name)]


OPERATIONS: list[tuple[str, Callable[[FaultLink], Fault], list[tuple[str, str, dict]]]] = [
    ("latency", lambda k: k.latency(100, jitter=5),
     [("latency", "downstream", {"latency": 100, "jitter": 5})]),
    ("blackhole", lambda k: k.blackhole(),
     [("timeout", "upstream", {"timeout": 0}), ("timeout", "downstream", {"timeout": 0})]),
    ("idle_close", lambda k: k.idle_close(250, stream="downstream"),
     [("timeout", "downstream", {"timeout": 250})]),
    ("reset_peer", lambda k: k.reset_peer(),
     [("reset_peer", "downstream", {"timeout": 0})]),
    ("bandwidth", lambda k: k.bandwidth(64, stream="upstream"),
     [("bandwidth", "upstream", {"rate": 64})]),
    ("limit_data", lambda k: k.limit_data(1000),
     [("limit_data", "downstream", {"bytes": 1000})]),
    ("slice", lambda k: k.slice(16, 4, 50, stream="both"),
     [("slicer", "upstream", {"average_size": 16, "size_variation": 4, "delay": 50}),
      ("slicer", "downstream", {"average_size": 16, "size_variation": 4, "delay": 50})]),
]


@pytest.mark.parametrize(("kind", "inject", "expected"), OPERATIONS, ids=[o[0] for o in OPERATIONS])
def test_operation_injects_its_toxics_and_heals(
        links: Faults, recorder: ListRecorder, kind: str,
        inject: Callable[[FaultLink], Fault], expected: list) -> None:
    link = links.echo
    with inject(link) as fault:
        assert fault.active and fault.kind == kind
        assert toxics(link) == expected
        assert link.active_faults == (fault,)
    assert toxics(link) == []
    assert not fault.active and link.active_faults == ()
    phases = [(c[0], c[1], c[2], c[3]) for c in recorder.calls]
    assert phases == [("inject", fault.fault_id, "echo", kind), ("heal", fault.fault_id, "echo", kind)]
    params = recorder.calls[0][4]
    assert params["proxy"] == link.proxy_name and isinstance(params["monotonic"], float)


def test_latency_slows_traffic_and_heals(links: Faults) -> None:
    link = links.echo
    with dial(link) as sock:
        with link.latency(100):
            assert round_trip(sock) >= 0.1
        assert round_trip(sock) < 0.1


def test_healing_runs_when_the_block_raises(links: Faults, recorder: ListRecorder) -> None:
    link = links.echo
    with pytest.raises(RuntimeError), link.latency(50):
        raise RuntimeError("scenario failed")
    assert toxics(link) == []
    assert [c[0] for c in recorder.calls] == ["inject", "heal"]


def test_down_refuses_and_heals_with_nesting(links: Faults) -> None:
    link = links.echo
    client = link.client
    with link.down():
        with link.down():
            assert client.proxy(link.proxy_name).enabled is False
        assert client.proxy(link.proxy_name).enabled is False  # still down: outer fault active
        with pytest.raises(ConnectionRefusedError):
            dial(link).close()
    assert client.proxy(link.proxy_name).enabled is True
    with dial(link) as sock:
        round_trip(sock)


def test_blackhole_keeps_the_connection_and_heal_closes_it(links: Faults) -> None:
    link = links.echo
    with dial(link) as sock:
        fault = link.blackhole()
        sock.sendall(b"gone")
        sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            sock.recv(10)
        fault.heal()
        fault.heal()  # idempotent
        wait_closed(sock, 1.0)


def test_heal_all_clears_stray_toxics_and_enables(links: Faults) -> None:
    link = links.echo
    link.latency(10)
    link.down()
    link.client.add_toxic(link.proxy_name, "noop", name="stray")
    links.heal_all()
    assert toxics(link) == [] and link.active_faults == ()
    assert link.client.proxy(link.proxy_name).enabled is True


def test_a_failing_recorder_still_heals(server: Server, prefix: str,
                                        echo_server: TcpServer) -> None:
    class Broken:
        def record_fault(self, *args: Any) -> None:
            raise OSError("disk full")

    faults = create_links(server.client(), {"echo": echo_server.address}, prefix=prefix,
                          recorder=Broken())
    with pytest.raises(OSError, match="disk full"):
        faults.echo.latency(10)
    assert toxics(faults.echo) == []


def test_urls_point_at_the_proxy(links: Faults) -> None:
    link = links.echo
    addr = f"{link.listen_host}:{link.listen_port}"
    assert link.url("postgresql://jc@127.0.0.1:5432/db?sslmode=disable") == \
        f"postgresql://jc@{addr}/db?sslmode=disable"
    assert link.url("redis://127.0.0.1:6379/3") == f"redis://{addr}/3"
    assert link.redis_url(2) == f"redis://{addr}/2"
    with pytest.raises(AttributeError, match="no fault link named 'nope'"):
        _ = links.nope


# --- the pytest fixtures (they need the plugin's jobchaos_stack) ---------------------------
def test_faults_fixture_links_every_service(faults: Faults, proxied_redis_url: str,
                                            proxied_database_url: str) -> None:
    import psycopg
    import redis

    recorder = ListRecorder()
    faults.recorder = recorder  # given explicitly; the fixture probes for none

    assert set(faults.names) == {"redis", "postgres", "smtp"}
    with redis.Redis.from_url(proxied_redis_url, socket_timeout=5) as client:
        client.ping()
        with faults.redis.latency(100):
            start = time.monotonic()
            client.ping()
            assert time.monotonic() - start >= 0.1
    with psycopg.connect(proxied_database_url, connect_timeout=5) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    with socket.create_connection((faults.smtp.listen_host, faults.smtp.listen_port), 5) as s:
        s.settimeout(5)
        assert s.recv(3) == b"220"
    assert [c[0] for c in recorder.calls] == ["inject", "heal"]
    faults.postgres.down()  # left active on purpose: the fixture heals it after the test


def test_proxied_connections_point_at_the_links(faults: Faults, proxied_connections: Any,
                                                chaos_connections: Any) -> None:
    assert proxied_connections.redis_url == faults.redis.url(chaos_connections.redis_url)
    assert faults.postgres.address in proxied_connections.database_url
    assert (proxied_connections.smtp_host, proxied_connections.smtp_port) == (
        faults.smtp.listen_host, faults.smtp.listen_port)
    assert proxied_connections.queue == chaos_connections.queue


def test_faults_fixture_healed_the_previous_test(faults: Faults) -> None:
    for link in faults:
        assert link.client.toxics(link.proxy_name) == []
        assert link.client.proxy(link.proxy_name).enabled is True
