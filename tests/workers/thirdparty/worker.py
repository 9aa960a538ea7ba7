"""The shim of the tinyq test worker: ``python -m tests.workers.thirdparty.worker``.

The library-specific part only, as a user would write it for their own library: connect
tinyq to the contract's Redis and queue, and plug the kit into tinyq's hooks. Everything else
(what the kit records and how the job's steps run) is :mod:`harness.kit`.

- ready: once tinyq starts consuming (after its start-up second and its redelivery);
- started (main process): ``kit.begin`` with tinyq's own attempt number (1, also for a
  redelivery: tinyq does not count); the kit counts runs for ``fail`` and ``crash``;
- perform (the work horse, forked, in its own process group): the steps, then ``completed``,
  or ``dead`` with reason ``exception`` (one try);
- failed (main process, the horse ended badly): ``dead`` with tinyq's reason (``timeout``,
  ``killed``), unless the horse recorded an outcome first;
- ended: ``stopped``.

Effects run ``plain`` (the job has no idempotency key), so a job tinyq runs twice writes its
effect twice: a real finding. A Redis error ends the main process with exit code 1.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from harness.kit import Attempt, Kit, KitError
from tests.workers.thirdparty import tinyq


def log(message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"tinyq-shim: {stamp} {message}", file=sys.stderr, flush=True)


def connect(url: str) -> redis.Redis:
    """tinyq's connection as its users open it: short timeouts, no client retries."""
    return redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0,
                                retry=Retry(NoBackoff(), 0))


class Shim:
    """tinyq's handler, reporting through the kit."""

    def __init__(self, kit: Kit) -> None:
        self.kit = kit

    def ready(self) -> None:
        self.kit.ready()
        log(f"{self.kit.worker} consuming")

    def started(self, message: tinyq.Message) -> Attempt:
        return self.kit.begin(message.payload, attempt=message.attempt)

    def perform(self, context: Any) -> None:
        attempt: Attempt = context
        try:
            attempt.run()
        except Exception as exc:
            attempt.dead("exception", f"{type(exc).__name__}: {exc}")
            raise
        attempt.completed()

    def failed(self, context: Any, reason: str, detail: str) -> None:
        attempt: Attempt = context
        attempt.dead(reason if reason in ("timeout", "killed") else "exception",  # type: ignore[arg-type]
                     detail)

    def ended(self, context: Any) -> None:
        attempt: Attempt = context
        attempt.stopped()


def main() -> int:
    try:
        kit = Kit.from_env()
    except KitError as exc:
        log(str(exc))
        return 2
    queue = tinyq.Queue(kit.connections.queue, connect(kit.connections.redis_url))
    worker = tinyq.Worker(queue, kit.worker, Shim(kit), job_timeout=kit.policy.job_timeout,
                          shutdown_grace=kit.policy.shutdown_grace, log=log)
    try:
        worker.work()
    except redis.RedisError as exc:
        log(f"Redis error, exiting: {type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
