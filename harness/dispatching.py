"""How a chaos job reaches the worker's system: the dispatcher, replaceable by a plugin.

A dispatcher is any callable ``dispatcher(job, ctx)`` (:class:`Dispatcher`) that enqueues one
chaos job, e.g. through the user's own library (``Queue.enqueue``, ``task.delay``). How it
ends is what the history records for that dispatch:

- it returns: enqueued (``ok``);
- it raises :class:`NotEnqueued`: definitely not enqueued (``fail``), e.g. the connection was
  refused before anything was sent;
- it raises anything else: unknown (``info``), e.g. a timeout after the request was sent.

The default, :func:`redis_list`, ``LPUSH``es the envelope onto the Redis list ``ctx.queue``
(docs/contract.md, section 2). A plugin is named by the setting ``dispatcher``
(``--jobchaos-dispatcher module:callable``) and imported once, when pytest configures
(:func:`load`), so a wrong name stops the session before any test runs.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import sys
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from harness.contract import Connections, Job, dispatch
from harness.errors import DispatcherError

if TYPE_CHECKING:
    from harness.run.policy import RunPolicy

__all__ = ["DispatchContext", "Dispatcher", "NotEnqueued", "load", "redis_list"]

SPEC = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
EXAMPLE = "myapp.chaos_dispatch:enqueue"


class NotEnqueued(Exception):
    """Raised by a dispatcher when the job was definitely not enqueued (recorded ``fail``)."""


@dataclass(frozen=True, slots=True)
class DispatchContext:
    """What a dispatcher gets with each job.

    Enqueue over ``direct``: it is the producer's link, the one a scenario means. On an
    ordinary dispatch it is the harness's direct (unfaulted) connection; on a dispatch through
    the fault proxy (a scenario faulting the producer's own link, ``through_proxy=True``) the
    harness passes a context whose ``direct`` *and* ``proxied`` are the proxied connections,
    so the plugin goes through the fault whichever it uses. ``proxied`` is always the
    producer's proxied link. ``queue`` is the run's queue name (``CHAOS_QUEUE`` of the
    workers); ``policy`` the run's policy (the knobs the workers were given, e.g.
    ``max_tries`` and ``job_timeout`` for ``enqueue``); ``timeout``
    the seconds the dispatch may take (bound every client call by it).
    """

    policy: RunPolicy
    direct: Connections
    proxied: Connections
    queue: str
    timeout: float = 5.0


class Dispatcher(Protocol):
    """Enqueues one chaos job; returns, raises :class:`NotEnqueued`, or raises (unknown)."""

    def __call__(self, job: Job, ctx: DispatchContext) -> None: ...


def redis_list(job: Job, ctx: DispatchContext) -> None:
    """The default dispatcher: ``LPUSH`` the envelope onto the Redis list ``ctx.queue``.

    A connection refused before anything was sent is :class:`NotEnqueued`; a connection cut or
    a timeout after sending is unknown (the error is raised as it is)."""
    import redis

    client = redis.Redis.from_url(ctx.direct.redis_url, socket_timeout=ctx.timeout,
                                  socket_connect_timeout=ctx.timeout)
    with contextlib.closing(client):
        try:
            dispatch(client, ctx.queue, [job])
        except redis.ConnectionError as exc:
            if "Connection refused" in str(exc):
                raise NotEnqueued(str(exc)) from exc
            raise


def load(spec: str, source: str = "default") -> Dispatcher:
    """The callable ``spec`` names (``module:attribute``), imported now; a
    :class:`DispatcherError` saying what was tried and the fix when it cannot be used."""
    module_name, _, attr = spec.partition(":")
    if not SPEC.match(spec):
        raise _error(spec, source, f"expected module:callable, e.g. {EXAMPLE}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            path = list(dict.fromkeys(p or "." for p in sys.path))
            raise _error(spec, source, f"no module named {exc.name!r} on the import path "
                         f"({', '.join(path[:5])}{', ...' if len(path) > 5 else ''})") from None
        raise _error(spec, source, f"importing {module_name!r} failed: {_why(exc)}") from None
    except Exception as exc:  # the module itself raised while importing
        raise _error(spec, source, f"importing {module_name!r} failed: {_why(exc)}") from None
    target: object = module
    for i, part in enumerate(attr.split(".")):
        if not hasattr(target, part):
            where = ".".join([module_name, *attr.split(".")[:i]])
            raise _error(spec, source, f"{where} has no attribute {part!r} (module "
                         f"{module_name}: {getattr(module, '__file__', '?')})")
        target = getattr(target, part)
    if not callable(target):
        raise _error(spec, source, f"{module_name}:{attr} is a {type(target).__name__}, not "
                     "a callable taking (job, ctx)")
    return target


def _why(exc: BaseException) -> str:
    """An exception in one line: its type, message and the line that raised it."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f" at {exc.filename}:{exc.lineno}"
    return f"{type(exc).__name__}: {exc}{where}"


def _error(spec: str, source: str, what: str) -> DispatcherError:
    from harness.config import SETTINGS

    how = next(s.how_to_set for s in SETTINGS if s.name == "dispatcher")
    return DispatcherError(
        f"dispatcher: {spec!r} (from {source}) cannot be used: {what}. "
        f"Fix: set {how} to module:callable, importable by pytest (add its directory to "
        "the ini option pythonpath or to PYTHONPATH), or unset it to LPUSH onto the "
        "Redis list.")
