"""The tinyq test worker's probe: ``python -m tests.workers.thirdparty.probe``.

Reads tinyq's structures (read-only) and prints what they hold: queued (in run order), in
progress (``leased``, with the worker that took each; tinyq has no leases, so no expiry) and
failed (``dead``, with tinyq's reason). tinyq schedules nothing and holds no locks.
"""

from __future__ import annotations

import sys

from harness.contract import ProbeState
from harness.kit import Kit, probe_main, probe_state
from tests.workers.thirdparty import tinyq
from tests.workers.thirdparty.worker import connect


def read(kit: Kit) -> ProbeState:
    queue = tinyq.Queue(kit.connections.queue, connect(kit.connections.redis_url))
    return probe_state(queued=[m.job_id for m in queue.queued()],
                       leased=[(m.job_id, worker) for m, worker in queue.started()],
                       dead=queue.failed())


if __name__ == "__main__":
    sys.exit(probe_main(read))
