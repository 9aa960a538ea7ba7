"""Each worker has its own links (one proxy per worker and service), made through the
Toxiproxy API of the session's server: a pool that follows the number of workers, workers that
keep their links over a restart, and link faults that strike every worker's link or one."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from harness.contract import ENV_DATABASE_URL, ENV_REDIS_URL, ENV_SMTP_PORT, db_write, job
from harness.faults import LinkPool
from harness.nemesis import after, link_fault, plan


def _ours(toxiproxy, prefix: str) -> list[str]:
    return sorted(name for name in toxiproxy.proxies() if name.startswith(prefix))


def test_the_pool_grows_and_shrinks_with_the_workers(toxiproxy, jobchaos_stack):
    upstreams = {"redis": f"{jobchaos_stack.redis.host}:{jobchaos_stack.redis.port}",
                 "postgres": f"{jobchaos_stack.postgres.host}:{jobchaos_stack.postgres.port}"}
    prefix = f"jobchaos_pooltest_{os.getpid()}"
    pool = LinkPool(toxiproxy, upstreams, prefix=prefix)
    try:
        pool.ensure(3)
        assert len(pool) == 3 and len(_ours(toxiproxy, prefix)) == 6
        first = pool[0].redis.address
        pool.ensure(1)
        assert _ours(toxiproxy, prefix) == [f"{prefix}_w1_postgres", f"{prefix}_w1_redis"]
        pool.ensure(2)
        assert len(_ours(toxiproxy, prefix)) == 4
        assert pool[0].redis.address == first, "a kept worker keeps its link"
        assert len({links.redis.address for links in pool}) == 2, "one link per worker"
    finally:
        pool.close()
    assert _ours(toxiproxy, prefix) == []


def _ports(env: dict[str, str]) -> tuple[int | None, int | None, str]:
    return (urlsplit(env[ENV_REDIS_URL]).port, urlsplit(env[ENV_DATABASE_URL]).port,
            env[ENV_SMTP_PORT])


def test_each_worker_connects_through_its_own_links(chaos_factory, jobchaos_worker_links):
    with chaos_factory("three") as run:
        pool = run.start_workers(3)
        assert len(jobchaos_worker_links) == 3
        ports = [_ports(w.env) for w in pool.workers]
        assert len(set(ports)) == 3, ports
        for w, links in zip(pool.workers, jobchaos_worker_links, strict=True):
            assert _ports(w.env) == (links.redis.listen_port, links.postgres.listen_port,
                                     str(links.smtp.listen_port))
        before = _ports(pool.workers[1].env)
        run.world.restart(1)  # a supervisor's restart keeps the worker's own links
        assert _ports(pool.workers[1].env) == before
        judgement = run.play(plan(3, [job(f"own-{i}", db_write()) for i in range(6)]))
        assert judgement.valid, judgement.text
    with chaos_factory("one") as run:
        judgement = run.play(plan(1, [job("alone", db_write())]))
        assert len(jobchaos_worker_links) == 1
        assert judgement.valid, judgement.text


def test_a_link_fault_strikes_every_workers_link_or_one(chaos):
    jobs = [job(f"l-{i}", db_write()) for i in range(4)]
    judgement = chaos.play(plan(2, jobs,
                                link_fault("latency", "redis", after(attempts=1), seconds=0.3,
                                           ms=20),
                                link_fault("down", "postgres", seconds=0.3, worker=1)))
    assert judgement.valid, judgement.text
    h = judgement.history
    injects = [h.values[i] for i in h.indices("inject")]
    every, one = injects[0]["params"], injects[1]["params"]
    assert injects[0]["target"] == "redis" and "worker" not in every
    assert len(every["links"]) == 3, "the producer's link and each worker's"
    assert len(every["toxics"]) == 3
    assert injects[1]["target"] == "postgres" and one["worker"] == "worker-2"
    assert one["links"] == [chaos.world.worker_links[1].postgres.proxy_name]
