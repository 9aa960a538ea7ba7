"""pytest fixtures of the fault proxy (imported by the jobchaos plugin).

- `toxiproxy` (session): a typed client to the real server when a Toxiproxy URL is given
  (`--jobchaos-toxiproxy-url`, `JOBCHAOS_TOXIPROXY_URL`/`TOXIPROXY_URL`, ini
  `jobchaos_toxiproxy_url`) or `toxiproxy-server` is on PATH, else to the embedded server.
- `faults` (function): one proxied link per service of `jobchaos_stack` (redis, postgres,
  smtp); every fault is healed, every toxic removed and every proxy enabled after the test.
- `jobchaos_worker_links` (session): one set of links per worker of a scenario run
  (`LinkPool`), grown and shrunk to each run's number of workers, deleted at the end.
- `proxied_redis_url`, `proxied_database_url`: this test's URLs, through the links;
  `proxied_connections`: the plugin's `chaos_connections`, through the links.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.errors import FaultProxyError
from harness.toxiproxy.client import ToxiproxyClient, ToxiproxyError

from .links import Faults, LinkPool, create_links, delete_links
from .server import ServerChoice, toxiproxy_server, url_from_env

CHOICE_KEY = pytest.StashKey[ServerChoice]()
SERVICES = ("redis", "postgres", "smtp")


def _optional_fixture(request: pytest.FixtureRequest, name: str) -> Any:
    try:
        return request.getfixturevalue(name)
    except pytest.FixtureLookupError:
        return None


def _worker_id(config: pytest.Config) -> str:
    return str(getattr(config, "workerinput", {}).get("workerid", "main"))


def _toxiproxy_url(config: Any) -> tuple[str | None, str]:
    url = getattr(config, "toxiproxy_url", None)
    if url:
        sources = getattr(config, "sources", {}) or {}
        return str(url), str(sources.get("toxiproxy_url", "the jobchaos config"))
    from_env = url_from_env()
    if from_env is not None:
        return from_env[0], f"env {from_env[1]}"
    return None, ""


@pytest.fixture(scope="session")
def toxiproxy(request: pytest.FixtureRequest) -> Iterator[ToxiproxyClient]:
    """A client to the session's Toxiproxy server (given, real on PATH, or embedded)."""
    from harness.toxiproxy.launcher import LaunchError

    config = _optional_fixture(request, "jobchaos_config")
    url, source = _toxiproxy_url(config)
    seed = getattr(config, "seed", None) or os.environ.get("JOBCHAOS_SEED")
    artifacts = getattr(config, "artifacts_dir", None)
    log_path = (
        Path(artifacts) / _worker_id(request.config) / "toxiproxy.log" if artifacts else None
    )
    try:
        with toxiproxy_server(
            url, url_source=source, seed=int(seed) if seed else None, log_path=log_path
        ) as (client, choice):
            request.config.stash[CHOICE_KEY] = choice
            yield client
    except (ToxiproxyError, LaunchError) as exc:
        # Every test would fail the same way: the plugin reports it once and stops the session.
        raise FaultProxyError(f"{type(exc).__name__}: {exc}") from None


def _upstreams(request: pytest.FixtureRequest) -> dict[str, str]:
    stack = request.getfixturevalue("jobchaos_stack")
    upstreams = {}
    for name in SERVICES:
        service = getattr(stack, name, None)
        if service is not None and getattr(service, "port", None):
            upstreams[name] = f"{service.host}:{service.port}"
    return upstreams


def _prefix(request: pytest.FixtureRequest) -> str:
    return f"jobchaos_{_worker_id(request.config)}_{os.getpid()}"


@pytest.fixture(scope="session")
def jobchaos_fault_links(
    request: pytest.FixtureRequest, toxiproxy: ToxiproxyClient
) -> Iterator[Faults]:
    """The session's shared proxies in front of `jobchaos_stack`: the links of the harness's
    own producer and of the `faults` fixture (use `faults` in tests)."""
    try:
        links = create_links(toxiproxy, _upstreams(request), prefix=_prefix(request))
    except ToxiproxyError as exc:
        raise FaultProxyError(f"creating the fault proxies failed: {exc}") from None
    try:
        yield links
    finally:
        with contextlib.suppress(ToxiproxyError):
            delete_links(links)


@pytest.fixture(scope="session")
def jobchaos_worker_links(
    request: pytest.FixtureRequest, toxiproxy: ToxiproxyClient
) -> Iterator[LinkPool]:
    """The session's per-worker proxies (``{prefix}_w{n}_{service}``), created as runs need
    them and deleted at the end of the session."""
    pool = LinkPool(toxiproxy, _upstreams(request), prefix=_prefix(request))
    try:
        yield pool
    finally:
        with contextlib.suppress(ToxiproxyError):
            pool.close()


@pytest.fixture
def faults(request: pytest.FixtureRequest, jobchaos_fault_links: Faults) -> Iterator[Faults]:
    """Faults per link (`faults.redis.down()`, ...), all healed after the test. Faults are
    recorded only where a recorder is given explicitly (`faults.recorder = recorder`); a
    scenario run's nemesis records its own."""
    links = jobchaos_fault_links
    links.recorder = None
    try:
        yield links
    finally:
        try:
            links.heal_all()
        finally:
            links.recorder = None


@pytest.fixture
def proxied_redis_url(faults: Faults, redis_url: str) -> str:
    """This test's Redis URL, through the redis link."""
    return faults.redis.url(redis_url)


@pytest.fixture
def proxied_database_url(faults: Faults, database_url: str) -> str:
    """This test's database URL, through the postgres link."""
    return faults.postgres.url(database_url)


@pytest.fixture
def proxied_connections(faults: Faults, chaos_connections: Any) -> Any:
    """The plugin's `chaos_connections` (a worker's connections), through the fault links."""
    return faults.proxied(chaos_connections)
