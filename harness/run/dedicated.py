"""A Redis server of one run's own, with a chosen persistence, and a proxied link to it.

The stack's Redis is shared by every test of the process (each has a logical database) and
keeps nothing across a restart. A scenario that restarts Redis gets its own server instead
(``@pytest.mark.jobchaos_redis(persistence=...)``), so the restart strikes only that run and
persists what the scenario chose: ``"always"`` (append-only file, fsync on every write) or
``"none"`` (a restart forgets everything). The server runs in the run's artifacts directory
(its log and append-only file stay there) and is stopped, like every server, when the run ends.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

from harness.faults.links import Faults, create_links, delete_links
from harness.services.redis import Persistence, RedisServer

MARKER = "jobchaos_redis"
_numbers = itertools.count(1)


@contextlib.contextmanager
def dedicated_redis(links: Faults, workdir: Path, *, persistence: Persistence,
                    binary: Path | None = None, start_timeout: float = 30.0
                    ) -> Iterator[tuple[RedisServer, Faults]]:
    """Start a Redis server of its own in ``workdir`` and a proxied link to it; yield the
    server and ``links`` with their ``redis`` link replaced by the new one (the other links
    are shared). The link and the server are removed on exit."""
    server = RedisServer(workdir, binary=binary, persistence=persistence,
                         start_timeout=start_timeout)
    with server:
        prefix = f"jobchaos_own_{os.getpid()}_{next(_numbers)}"
        own = create_links(links.client, {"redis": f"{server.host}:{server.port}"},
                           prefix=prefix)
        try:
            shared = {link.name: link for link in links if link.name != "redis"}
            yield server, Faults(links.client, {"redis": own.redis, **shared})
        finally:
            with contextlib.suppress(Exception):
                delete_links(own)
