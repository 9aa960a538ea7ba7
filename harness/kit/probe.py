"""Probe answers: what a library's structures still hold, as a :class:`ProbeState`.

A probe script reads the library's structures (read-only: a probe must change nothing) and
hands the job ids to :func:`probe_state`; :func:`print_probe` prints the answer, and
:func:`probe_main` does both with the errors a person can act on::

    def read(kit: Kit) -> ProbeState:
        q = mylib.Queue(kit.connections.queue, redis.Redis.from_url(kit.connections.redis_url))
        return probe_state(queued=q.job_ids(), leased=q.started(), dead=q.failed())

    sys.exit(probe_main(read))
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import TextIO

from harness.contract import Dead, Lease, Lock, ProbeState
from harness.kit.reports import Kit, KitError

NO_EXPIRY = math.inf  # ``Lease.expires_in`` of a job held with no lease (printed Infinity)


def probe_state(*, queued: Iterable[str] = (), scheduled: Iterable[str] = (),
                leased: Iterable[Lease | tuple[str, str]] = (),
                dead: Iterable[Dead | tuple[str, str]] | Mapping[str, str] = (),
                locks: Iterable[Lock] = ()) -> ProbeState:
    """A probe answer. ``queued`` in the order the jobs will run; ``leased`` as
    :class:`Lease` or (job id, worker) for a job held with no expiry; ``dead`` as
    :class:`Dead`, (job id, reason) or a mapping job id -> reason (a reason should be one of
    ``FAILURE_REASONS``)."""
    dead_items = dead.items() if isinstance(dead, Mapping) else dead
    return ProbeState(
        queued=tuple(queued), scheduled=tuple(scheduled),
        leased=tuple(x if isinstance(x, Lease) else Lease(x[0], x[1], NO_EXPIRY)
                     for x in leased),
        dead=tuple(x if isinstance(x, Dead) else Dead(x[0], x[1]) for x in dead_items),
        locks=tuple(locks))


def print_probe(state: ProbeState, file: TextIO | None = None) -> None:
    """Print ``state`` as the one JSON line the harness reads from a probe's stdout."""
    print(state.to_json(), file=file or sys.stdout, flush=True)


def probe_main(read: Callable[[Kit], ProbeState],
               environ: Mapping[str, str] = os.environ) -> int:
    """A probe command's body: the kit from ``environ``, ``read(kit)`` printed; 0 on success.
    Anything that fails is one line on stderr and exit code 1 (2 for missing env vars), which
    the harness reports with the probe's output."""
    try:
        kit = Kit.from_env(environ)
    except KitError as exc:
        print(f"probe: {exc}", file=sys.stderr)
        return 2
    try:
        state = read(kit)
    except Exception as exc:
        print(f"probe: reading the worker's structures failed: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 1
    finally:
        kit.close()
    print_probe(state)
    return 0
