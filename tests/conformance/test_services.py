"""Toxics against real Redis and PostgreSQL clients (the stack from the jobchaos plugin)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from .conftest import Server


def proxy_to(server: Server, name: str, service: Any) -> tuple[str, int]:
    proxy = server.client().create_proxy(name, f"{service.host}:{service.port}")
    return proxy.listen_host, proxy.listen_port


def test_redis_command_under_100ms_latency(server: Server, prefix: str,
                                           jobchaos_stack: Any) -> None:
    import redis

    host, port = proxy_to(server, f"{prefix}redis", jobchaos_stack.redis)
    with redis.Redis(host=host, port=port, socket_timeout=5) as client:
        assert client.ping()
        server.client().add_toxic(f"{prefix}redis", "latency", {"latency": 100})
        start = time.monotonic()
        client.set("conformance", "1")
        assert time.monotonic() - start >= 0.100
        server.client().reset()
        start = time.monotonic()
        assert client.get("conformance") == b"1"
        assert time.monotonic() - start < 0.1


def test_reset_peer_during_a_postgres_query(server: Server, prefix: str,
                                            jobchaos_stack: Any, database_url: str) -> None:
    import psycopg

    host, port = proxy_to(server, f"{prefix}pg", jobchaos_stack.postgres)
    url = database_url.replace(f"{jobchaos_stack.postgres.host}:{jobchaos_stack.postgres.port}",
                               f"{host}:{port}")
    with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        server.client().add_toxic(f"{prefix}pg", "reset_peer", {"timeout": 50})
        with pytest.raises(psycopg.OperationalError):
            conn.execute("select pg_sleep(0.2)")
        assert conn.broken or conn.closed


def test_downed_link_refuses_redis_and_closes_live_connections(
        server: Server, prefix: str, jobchaos_stack: Any) -> None:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    host, port = proxy_to(server, f"{prefix}redis", jobchaos_stack.redis)
    live = redis.Redis(host=host, port=port, socket_timeout=2, retry=Retry(NoBackoff(), 0))
    try:
        assert live.ping()
        server.client().disable(f"{prefix}redis")
        with pytest.raises(redis.ConnectionError):
            live.ping()  # its connection was closed; reconnecting is refused
        with pytest.raises(redis.ConnectionError), redis.Redis(
                host=host, port=port, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0)) as fresh:
            fresh.ping()
        server.client().enable(f"{prefix}redis")
        assert live.ping()
    finally:
        live.close()
