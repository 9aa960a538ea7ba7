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
from harness.contract import ProbeState, worker_env
from harness.run.gauges import Gauges
from harness.run.policy import RunPolicy
from harness.run.world import World

POLL = 0.05
SETTLE = 1.0  # seconds between two probe answers that must agree to end a drain early


def drain(gauges: Gauges, watch: Callable[[], None], dispatched: set[str],
          recorder: h.Recorder, deadline: float,
          probe: Callable[[], ProbeState] | None = None,
          working: Callable[[], bool] = lambda: False) -> bool:
    """Wait until every job in ``dispatched`` is terminal and the queue list is empty (a
    duplicate of a finished job must be consumed, not left behind), or ``deadline`` s.

    With a ``probe``, the wait also ends once the worker's own system has held none of the
    unfinished jobs (not queued, scheduled or leased) in two answers ``SETTLE`` s apart:
    nothing will ever finish them, so waiting out the deadline would only cost time. The
    probe is asked only while no attempt is ``working`` (running on a live worker)."""
    op = recorder.invoke(h.OBSERVER, h.DRAIN, {"deadline": deadline})
    end = time.monotonic() + deadline
    pending, queued = set(dispatched), -1
    absent_since: float | None = None
    last_probe = -SETTLE
    while True:
        watch()
        with contextlib.suppress(Exception):  # a server may be restarting
            pending = dispatched - gauges.terminal_jobs()
            queued = gauges.queued()
        now = time.monotonic()
        if (not pending and queued == 0) or now >= end:
            break
        if (probe is not None and pending and queued == 0 and now - last_probe >= SETTLE
                and not _safely(working)):
            last_probe = now
            if _held_by(probe, pending):
                absent_since = None
            elif absent_since is None:
                absent_since = now
            else:
                recorder.info(op, {"pending": len(pending), "queued": 0,
                                   "jobs": sorted(pending)[:20],
                                   "ended": "the worker's system holds none of them"})
                return False
        time.sleep(POLL)
    if pending or queued:
        recorder.info(op, {"pending": len(pending), "queued": queued, "jobs": sorted(pending)[:20]})
        return False
    recorder.ok(op, {"pending": 0, "queued": 0})
    return True


def _safely(working: Callable[[], bool]) -> bool:
    """``working()``, taken as True when it cannot be read."""
    try:
        return working()
    except Exception:
        return True


def _held_by(probe: Callable[[], ProbeState], pending: set[str]) -> bool:
    """Whether the probe finds any of ``pending`` queued, scheduled or leased (True when it
    cannot answer: only a clear answer ends a drain early)."""
    try:
        state = probe()
    except RuntimeError:
        return True
    inside = {*state.queued, *state.scheduled, *(x.job_id for x in state.leased)}
    return bool(pending & inside)


def probe_of(world: World, policy: RunPolicy) -> Callable[[], ProbeState] | None:
    """The worker's probe as a call (None when it has none); RuntimeError when it fails."""
    argv = world.worker.probe_argv
    if not argv:
        return None
    env = {**world.worker.env, **worker_env(world.direct, policy, "probe")}
    return lambda: collectors.run_probe(argv, env)


def observe(recorder: h.Recorder, world: World, policy: RunPolicy) -> None:
    """Append the table rows, the sink's messages, the probe's answer and the workers' lives
    to the history."""
    tables = collectors.read_tables(world.direct.database_url)
    recorder.observe(*collectors.table_observations(tables))
    if world.sink is not None:
        recorder.observe(*collectors.message_observations(world.sink.messages()))
    state, reason = None, "no probe configured"
    probe = probe_of(world, policy)
    if probe is not None:
        try:
            state = probe()
        except RuntimeError as exc:
            reason = str(exc)
    recorder.observe(*collectors.probe_observations(state, reason))
    if world.pool is not None:
        recorder.observe(*collectors.life_observations(world.pool.workers, tables.ready))
