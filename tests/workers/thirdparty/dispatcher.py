"""The tinyq test worker's dispatch plugin:
``--jobchaos-dispatcher tests.workers.thirdparty.dispatcher:enqueue``.

Enqueues each chaos job through tinyq's own API, over the harness's direct Redis link.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis

from harness.contract import Job
from tests.workers.thirdparty import tinyq

if TYPE_CHECKING:
    from harness.dispatching import DispatchContext

_clients: dict[str, redis.Redis] = {}


def enqueue(job: Job, ctx: DispatchContext) -> None:
    """Put ``job`` on tinyq's queue named ``ctx.queue``. A refused connection means it was
    definitely not enqueued (``NotEnqueued``); any other error leaves it unknown."""
    from harness.dispatching import NotEnqueued

    url = ctx.direct.redis_url
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = redis.Redis.from_url(url, socket_timeout=5.0,
                                                      socket_connect_timeout=5.0)
    try:
        tinyq.Queue(ctx.queue, client).enqueue(job.id, job.to_json())
    except redis.ConnectionError as exc:
        if "Connection refused" in str(exc):
            raise NotEnqueued(f"tinyq could not reach Redis: {exc}") from exc
        raise
