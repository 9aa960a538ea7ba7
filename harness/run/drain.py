"""After the nemesis: wait until the work is done (the drain), then observe what happened.

The drain ends when every dispatched job has a terminal outcome and no copy of one is left in
the worker's system, or when the policy's deadline passes; either way it is recorded. "In the
worker's system" is what its probe finds queued, scheduled or leased when it has a probe (a
plugin dispatcher enqueues through the user's library and never fills the harness's list),
else what is on the harness's queue list. The observation appends what the harness itself can
see: the contract tables, the messages the SMTP sink received, and the worker system's own
state through the probe.
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
PROBE_EVERY = 0.5  # seconds between two runs of the probe (a subprocess) during a drain
SETTLE = 1.0  # seconds between two probe answers that must agree to end a drain early


def drain(gauges: Gauges, watch: Callable[[], None], dispatched: set[str],
          recorder: h.Recorder, deadline: float,
          working: Callable[[], bool] = lambda: False) -> bool:
    """Wait until every job in ``dispatched`` is terminal and the worker's system holds no
    copy of any (a duplicate of a finished job must be consumed, not left behind), or
    ``deadline`` s.

    Without a probe, "holds" is the queue list's length, read every ``POLL`` s. With a probe
    (``gauges.probing``), it is the probe's answer, asked at most every ``PROBE_EVERY`` s: once
    every job is terminal, and while jobs are unfinished but no attempt is ``working``
    (running on a live worker). Two answers ``SETTLE`` s apart that find none of the
    dispatched jobs while some are unfinished end the drain early: nothing will ever finish
    them, so waiting out the deadline would only cost time."""
    op = recorder.invoke(h.OBSERVER, h.DRAIN, {"deadline": deadline})
    end = time.monotonic() + deadline
    pending, queued = set(dispatched), -1
    asked = looked = -PROBE_EVERY  # when the probe was last asked; when ``working`` was read
    none_since: float | None = None  # first of the answers in a row that found none held
    error: str | None = None  # why the probe's last answer failed
    while True:
        watch()
        with contextlib.suppress(Exception):  # a server may be restarting
            pending = dispatched - gauges.terminal_jobs()
            if not gauges.probing:
                queued = gauges.queued(dispatched)
        now = time.monotonic()
        if not gauges.probing:
            if not pending and queued == 0:
                break
        elif now - asked >= PROBE_EVERY and (not pending or now - looked >= PROBE_EVERY):
            looked = now
            if pending and _safely(working):
                none_since = None  # an attempt is running: ask once it is not
            else:
                asked = now
                queued, error = _ask(gauges, dispatched)
                if queued == 0 and not pending:
                    break
                if queued != 0:
                    none_since = None
                elif none_since is None:
                    none_since = now
                elif now - none_since >= SETTLE:
                    recorder.info(op, {"pending": len(pending), "queued": 0,
                                       "jobs": sorted(pending)[:20],
                                       "ended": "the worker's system holds none of them"})
                    return False
        if now >= end:
            break
        time.sleep(POLL)
    if pending or queued:
        extra = {"probe": error} if error is not None else {}
        recorder.info(op, {"pending": len(pending), "queued": queued,
                           "jobs": sorted(pending)[:20], **extra})
        return False
    recorder.ok(op, {"pending": 0, "queued": 0})
    return True


def _safely(working: Callable[[], bool]) -> bool:
    """``working()``, taken as True when it cannot be read."""
    try:
        return working()
    except Exception:
        return True


def _ask(gauges: Gauges, dispatched: set[str]) -> tuple[int, str | None]:
    """The probe's count of dispatched jobs it holds, or (-1, why) when it cannot answer: only
    a clear answer ends a drain."""
    try:
        return gauges.queued(dispatched), None
    except Exception as exc:
        return -1, str(exc)[:500]


def probe_of(world: World, policy: Callable[[], RunPolicy]) -> Callable[[], ProbeState] | None:
    """The worker's probe as a call (None when it has none); RuntimeError when it fails. It
    runs with the contract env of the harness's direct connections (``policy()`` read at each
    call), worker id ``probe``, plus the worker's extra env."""
    argv = world.worker.probe_argv
    if not argv:
        return None
    return lambda: collectors.run_probe(argv, {
        **world.worker.env,
        **worker_env(world.direct, policy(), "probe",
                     report_database_url=world.direct.database_url)})


def observe(recorder: h.Recorder, world: World, policy: RunPolicy) -> None:
    """Append the table rows, the sink's messages, the probe's answer and the workers' lives
    to the history."""
    tables = collectors.read_tables(world.direct.database_url)
    recorder.observe(*collectors.table_observations(tables))
    if world.sink is not None:
        recorder.observe(*collectors.message_observations(world.sink.messages()))
    state, reason = None, "no probe configured"
    probe = probe_of(world, lambda: policy)
    if probe is not None:
        try:
            state = probe()
        except RuntimeError as exc:
            reason = str(exc)
    recorder.observe(*collectors.probe_observations(state, reason))
    if world.pool is not None:
        recorder.observe(*collectors.life_observations(world.pool.workers, tables.ready))
