"""toxiproxy-python (PyPI 0.1.1) as a witness of API compatibility: its basic calls work."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from .conftest import Server, TcpServer, connect, round_trip

toxiproxy = pytest.importorskip("toxiproxy", reason="toxiproxy-python (dev extra) not installed")


@pytest.fixture
def tp(server: Server) -> Iterator[object]:
    from toxiproxy.api import APIConsumer

    saved = (APIConsumer.host, APIConsumer.port)
    parts = urlsplit(server.url)
    client = toxiproxy.Toxiproxy()
    client.update_api_consumer(parts.hostname, parts.port)  # class-level globals...
    try:
        yield client
    finally:
        APIConsumer.host, APIConsumer.port = saved


def test_basic_calls(tp: object, server: Server, prefix: str, echo_server: TcpServer) -> None:
    from toxiproxy.exceptions import NotFound, ProxyExists

    assert tp.running()  # type: ignore[attr-defined]
    assert b"version" in tp.version()  # type: ignore[attr-defined]
    proxy = tp.create(upstream=echo_server.address, name=f"{prefix}py")  # type: ignore[attr-defined]
    assert proxy.enabled is True and proxy.listen.startswith("127.0.0.1:")
    assert tp.get_proxy(f"{prefix}py").upstream == echo_server.address  # type: ignore[attr-defined]
    with pytest.raises(ProxyExists):
        tp.create(upstream=echo_server.address, name=f"{prefix}py")  # type: ignore[attr-defined]

    proxy.add_toxic(type="latency", attributes={"latency": 100})
    toxics = proxy.toxics()
    assert list(toxics) == ["latency_downstream"]
    assert toxics["latency_downstream"].attributes == {"latency": 100, "jitter": 0}
    with connect(server, f"{prefix}py") as sock:
        assert round_trip(sock) >= 0.1
    assert proxy.destroy_toxic("latency_downstream")
    assert proxy.get_toxic("latency_downstream") is None
    with pytest.raises(NotFound):
        proxy.destroy_toxic("latency_downstream")

    with proxy.down():
        assert server.client().proxy(f"{prefix}py").enabled is False
    assert server.client().proxy(f"{prefix}py").enabled is True
    assert tp.reset()  # type: ignore[attr-defined]
    assert tp.destroy(proxy)  # type: ignore[attr-defined]
    assert tp.get_proxy(f"{prefix}py") is None  # type: ignore[attr-defined]


def test_populate(tp: object, server: Server, prefix: str, echo_server: TcpServer) -> None:
    made = tp.populate([  # type: ignore[attr-defined]
        {"name": f"{prefix}p1", "upstream": echo_server.address, "listen": "127.0.0.1:0"},
        {"name": f"{prefix}p2", "upstream": echo_server.address, "listen": "127.0.0.1:0"},
    ])
    assert [p.name for p in made] == [f"{prefix}p1", f"{prefix}p2"]
    start = time.monotonic()
    with connect(server, f"{prefix}p2") as sock:
        round_trip(sock)
    assert time.monotonic() - start < 1
