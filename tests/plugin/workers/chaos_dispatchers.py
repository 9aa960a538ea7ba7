"""Dispatch plugins for the tests, written as a user writes one for their own library: each
enqueues the chaos job itself, over ``ctx.direct``, into the reference worker's Redis.

Named with ``--jobchaos-dispatcher chaos_dispatchers:NAME`` (this directory on the import
path, e.g. through the ini option ``pythonpath``).
"""

from __future__ import annotations

import contextlib

import redis

from harness.contract import Job
from harness.dispatching import DispatchContext, NotEnqueued
from reference_worker.keys import Keys

DELAY = 1.5  # seconds: how far ahead ``later`` schedules a job
SEEN: list[DispatchContext] = []  # the context of every dispatch, for the tests to read


def _client(ctx: DispatchContext) -> redis.Redis:
    return redis.Redis.from_url(ctx.direct.redis_url, socket_timeout=ctx.timeout,
                                socket_connect_timeout=ctx.timeout)


def lpush(job: Job, ctx: DispatchContext) -> None:
    """The simplest honest plugin for the reference worker: LPUSH the envelope itself."""
    SEEN.append(ctx)
    with contextlib.closing(_client(ctx)) as client:
        client.lpush(ctx.queue, job.to_json())


def by_name(job: Job, ctx: DispatchContext) -> None:
    """:func:`lpush`, ending as the job's id says: ``refused-*`` raise :class:`NotEnqueued`
    before sending anything; ``lost-reply-*`` are enqueued, then raise as if the reply was
    lost (the harness cannot know: unknown)."""
    if job.id.startswith("refused-"):
        SEEN.append(ctx)
        raise NotEnqueued(f"{job.id}: the broker refused the connection")
    lpush(job, ctx)
    if job.id.startswith("lost-reply-"):
        raise TimeoutError(f"{job.id}: no reply from the broker")


def later(job: Job, ctx: DispatchContext) -> None:
    """Enqueue ``DELAY`` s from now, as RQ's ``enqueue_in`` or Celery's ``countdown`` do: the
    job waits in the reference worker's scheduled set, never on the queue list, until due."""
    SEEN.append(ctx)
    keys = Keys(ctx.queue)
    with contextlib.closing(_client(ctx)) as client:
        seconds, micros = client.time()
        due = seconds * 1000 + micros // 1000 + int(DELAY * 1000)
        pipe = client.pipeline(transaction=True)
        pipe.hset(keys.jobs, job.id, job.to_json())
        pipe.zadd(keys.scheduled, {job.id: due})
        pipe.execute()
