"""After the nemesis: wait until the work is done (the drain), then observe what happened.

The drain ends when every dispatched job has a terminal outcome and no dispatched copy is
left on the queue, or when the policy's deadline passes; either way it is recorded. The
observation appends what the harness itself can see: the contract tables, the messages the
SMTP sink received, and the worker system's own state through the probe.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from harness import collectors
from harness import history as h
from harness.contract import worker_env
from harness.run.gauges import Gauges
from harness.run.policy import RunPolicy
from harness.run.world import World

POLL = 0.05


def drain(gauges: Gauges, watch: Callable[[], None], dispatched: set[str],
          recorder: h.Recorder, deadline: float) -> bool:
    """Wait until every job in ``dispatched`` is terminal and the queue list is empty (a
    duplicate of a finished job must be consumed, not left behind), or ``deadline`` s."""
    op = recorder.invoke(h.OBSERVER, h.DRAIN, {"deadline": deadline})
    end = time.monotonic() + deadline
    pending, queued = set(dispatched), -1
    while True:
        watch()
        with contextlib.suppress(Exception):  # a server may be restarting
            pending = dispatched - gauges.terminal_jobs()
            queued = gauges.queued()
        if (not pending and queued == 0) or time.monotonic() >= end:
            break
        time.sleep(POLL)
    if pending or queued:
        recorder.info(op, {"pending": len(pending), "queued": queued, "jobs": sorted(pending)[:20]})
        return False
    recorder.ok(op, {"pending": 0, "queued": 0})
    return True


def observe(recorder: h.Recorder, world: World, policy: RunPolicy) -> None:
    """Append the table rows, the sink's messages and the probe's answer to the history."""
    recorder.observe(*collectors.table_observations(
        collectors.read_tables(world.direct.database_url)))
    if world.sink is not None:
        recorder.observe(*collectors.message_observations(world.sink.messages()))
    state, reason = None, "no probe configured"
    if world.worker.probe_argv:
        try:
            state = collectors.run_probe(world.worker.probe_argv, {
                **world.worker.env, **worker_env(world.direct, policy, "probe")})
        except RuntimeError as exc:
            reason = str(exc)
    recorder.observe(*collectors.probe_observations(state, reason))
