"""The workload of a run: chaos jobs put on the queue, each dispatch recorded as a
``dispatcher`` op (``ok`` acknowledged, ``fail`` definitely not enqueued, ``info`` unknown)."""

from __future__ import annotations

import contextlib
import dataclasses
import time

from harness import history as h
from harness.contract import Connections, Job, dispatch


class Workload:
    """Dispatches jobs over the direct connection (or through the proxy, when a scenario
    faults the producer's own link) and remembers what it dispatched."""

    def __init__(self, recorder: h.Recorder, direct: Connections, proxied: Connections) -> None:
        self.recorder = recorder
        self.direct = direct
        self.proxied = proxied
        self.dispatched: dict[str, Job] = {}
        self.first_dispatch: float | None = None  # monotonic

    def dispatch(self, *jobs: Job, through_proxy: bool = False, timeout: float = 5.0) -> None:
        """Put ``jobs`` on the queue, one dispatch op each."""
        import redis

        url = (self.proxied if through_proxy else self.direct).redis_url
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        with contextlib.closing(client):
            for j in jobs:
                j = dataclasses.replace(j, dispatched_at=time.time())
                op = self.recorder.invoke(h.DISPATCHER, h.DISPATCH,
                                          h.dispatch_value(j.id, list(j.steps), j.unique_key))
                self.dispatched.setdefault(j.id, j)
                if self.first_dispatch is None:
                    self.first_dispatch = time.monotonic()
                try:
                    dispatch(client, self.direct.queue, [j])
                except redis.ConnectionError as exc:
                    # Refused before sending: it did not happen. Cut after: unknown.
                    kind = "fail" if "Connection refused" in str(exc) else "info"
                    self.recorder.complete(op, kind, {"job": j.id, "error": str(exc)})  # type: ignore[arg-type]
                except redis.TimeoutError as exc:
                    self.recorder.info(op, {"job": j.id, "error": str(exc)})
                else:
                    self.recorder.ok(op, {"job": j.id})
