"""Servers a scenario may restart: a Redis of the test's own, with the persistence it chose, and
the stack's PostgreSQL, whose per-test database survives a restart."""

from __future__ import annotations

import psycopg
import pytest
import redis

from harness.services.postgres import PostgresServer
from harness.services.redis import RedisServer


@pytest.mark.parametrize("crash", [False, True], ids=["graceful", "crash"])
def test_append_only_redis_keeps_every_acknowledged_write_across_a_restart(tmp_path, crash):
    with RedisServer(tmp_path, persistence="always") as server:
        client = redis.Redis.from_url(server.url())
        client.set("k", "v")
        client.rpush("q", *[str(i) for i in range(100)])
        with server.stopped(crash=crash):
            assert not server.running()
        assert client.get("k") == b"v" and client.llen("q") == 100
        client.close()
    assert (tmp_path / "appendonly.aof").exists()


def test_redis_without_persistence_forgets_everything_at_a_restart(tmp_path):
    with RedisServer(tmp_path, persistence="none") as server:
        client = redis.Redis.from_url(server.url())
        client.set("k", "v")
        with server.stopped():
            pass
        assert client.get("k") is None
        client.close()


def test_an_unknown_persistence_is_refused(tmp_path):
    with pytest.raises(ValueError, match="one of none, always"):
        RedisServer(tmp_path, persistence="everysec")  # type: ignore[arg-type]


@pytest.mark.jobchaos_redis(persistence="always")
def test_a_marked_test_runs_on_a_redis_of_its_own(chaos_factory, jobchaos_stack, toxiproxy):
    shared = jobchaos_stack.redis
    with chaos_factory("own") as run:
        server = run.world.servers["redis"]
        assert server is not shared and server.persistence == "always" and server.running()
        assert run.world.direct.redis_url == server.url()
        own_link = run.world.links.redis
        assert own_link.upstream == f"{server.host}:{server.port}"
        assert run.world.proxied.redis_url == own_link.url(server.url())
        # The other links are the session's.
        assert run.world.links.postgres.upstream.endswith(f":{jobchaos_stack.postgres.port}")
        # A restart of it strikes only this run: the stack's Redis is untouched.
        pid = shared.pid
        with server.stopped(crash=True):
            pass
        assert shared.running() and shared.pid == pid
        proxy = own_link.proxy_name
    assert not server.running(), "the run's own Redis is stopped with the run"
    assert proxy not in toxiproxy.proxies(), "and its link is deleted"


def test_the_test_database_survives_a_postgres_restart(jobchaos_stack, database_url):
    if not isinstance(jobchaos_stack.postgres, PostgresServer):
        pytest.skip("an external PostgreSQL is not restarted by the harness")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (n integer)")
        conn.execute("INSERT INTO kept SELECT generate_series(1, 50)")
    with jobchaos_stack.postgres.stopped():
        pass
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM kept").fetchone() == (50,)
    # The stack still makes fresh databases (its admin connection is re-opened).
    name, _ = jobchaos_stack.fresh_database()
    jobchaos_stack.drop_database(name)
