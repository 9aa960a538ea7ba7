"""The workload of a run: chaos jobs handed to the dispatcher (the default Redis list or the
user's plugin, :mod:`harness.dispatching`), each dispatch recorded as a ``dispatcher`` op:
``ok`` it returned, ``fail`` it raised ``NotEnqueued`` (definitely not enqueued), ``info`` it
raised anything else (unknown)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Literal

from harness import history as h
from harness.contract import Connections, Job
from harness.dispatching import DispatchContext, Dispatcher, NotEnqueued, redis_list
from harness.run.policy import RunPolicy


class Workload:
    """Dispatches jobs over the direct connection (or through the proxy, when a scenario
    faults the producer's own link) and remembers what it dispatched."""

    def __init__(self, recorder: h.Recorder, direct: Connections, proxied: Connections,
                 policy: Callable[[], RunPolicy], dispatcher: Dispatcher = redis_list) -> None:
        self.recorder = recorder
        self.direct = direct
        self.proxied = proxied
        self.policy = policy  # the run's policy
        self.dispatcher = dispatcher
        self.dispatched: dict[str, Job] = {}
        self.first_dispatch: float | None = None  # monotonic
        self.errors: list[str] = []  # what the dispatcher raised, in order

    def context(self, *, through_proxy: bool = False, timeout: float = 5.0) -> DispatchContext:
        """What the dispatcher gets: through the proxy, both connections are the proxied
        ones (the producer's link is the one faulted)."""
        direct = self.proxied if through_proxy else self.direct
        return DispatchContext(policy=self.policy(), direct=direct, proxied=self.proxied,
                               queue=self.direct.queue, timeout=timeout)

    def dispatch(self, *jobs: Job, through_proxy: bool = False, timeout: float = 5.0) -> None:
        """Hand ``jobs`` to the dispatcher, one dispatch op each."""
        ctx = self.context(through_proxy=through_proxy, timeout=timeout)
        for j in jobs:
            j = dataclasses.replace(j, dispatched_at=time.time())
            op = self.recorder.invoke(h.DISPATCHER, h.DISPATCH,
                                      h.dispatch_value(j.id, list(j.steps), j.unique_key))
            self.dispatched.setdefault(j.id, j)
            if self.first_dispatch is None:
                self.first_dispatch = time.monotonic()
            try:
                self.dispatcher(j, ctx)
            except NotEnqueued as exc:
                self._failed(op, "fail", j, exc)
            except Exception as exc:
                self._failed(op, "info", j, exc)
            else:
                self.recorder.ok(op, {"job": j.id})

    def _failed(self, op: h.Op, kind: Literal["fail", "info"], j: Job, exc: Exception) -> None:
        error = str(exc) if isinstance(exc, NotEnqueued) else f"{type(exc).__name__}: {exc}"
        self.errors.append(error)
        self.recorder.complete(op, kind, {"job": j.id, "error": error})
