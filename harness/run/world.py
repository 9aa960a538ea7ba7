"""The world a run acts on: its connections, the proxied links, the servers, the SMTP sink,
and the pool of workers under test.

Each worker connects through its own links of the fault proxy (``worker_links``, one proxy per
worker and service), so a fault can cut one worker off while the others carry on; the harness
itself reads and dispatches over ``direct`` connections, so its own bookkeeping is never
faulted (``proxied``, through the shared ``links``, is the producer's link when a scenario
faults it).

The workers are started and waited for until each signals readiness (a ``chaos_ready`` row,
unless the worker cannot: ``WorkerSpec.wait_ready``); from then on a worker that exits by
itself is restarted by the :class:`~harness.run.supervisor.Supervisor`, and judged from its
``life`` ops.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.config import Config
from harness.contract import Connections, Policy
from harness.dispatching import Dispatcher, load, redis_list
from harness.faults.link import FaultLink
from harness.faults.links import Faults, LinkPool, attempt_all
from harness.profile import DEFAULT_PROFILE, WorkerProfile
from harness.run.supervisor import Supervisor
from harness.services.pool import WorkerPool
from harness.services.readiness import ReadyRows
from harness.services.smtp import SinkMessage
from harness.services.workers import REFERENCE_WORKER, WorkerProcess

REFERENCE_PROBE = (REFERENCE_WORKER[0], "-m", "reference_worker.probe")
DEFAULT_READY_TIMEOUT = 30.0  # seconds; the ready_timeout setting


class Sink(Protocol):
    """The SMTP messages a run can see (those received since it began)."""

    def messages(self) -> list[SinkMessage]: ...


@dataclass(frozen=True)
class WorkerSpec:
    """Which worker runs, how jobs reach it, how it is probed, and what it declares (from the
    plugin's settings)."""

    argv: Sequence[str] = REFERENCE_WORKER
    probe_argv: Sequence[str] | None = REFERENCE_PROBE
    env: Mapping[str, str] = field(default_factory=dict)
    dispatcher: Dispatcher = redis_list
    profile: WorkerProfile = DEFAULT_PROFILE
    # The worker signals readiness (the profile's ``ready`` feature); False: it is only
    # checked to stay up through its first moments.
    wait_ready: bool = True
    ready_timeout: float = DEFAULT_READY_TIMEOUT  # seconds a process may take to be ready

    @classmethod
    def from_config(cls, cfg: Config) -> WorkerSpec:
        """The worker the session's settings name (the reference worker by default)."""
        probe: tuple[str, ...] | None = cfg.probe_cmd or (
            None if cfg.worker_cmd else REFERENCE_PROBE)
        if probe == ("none",):
            probe = None
        # Imported once already by the preflight check: a wrong name stopped pytest there.
        dispatcher = redis_list if cfg.dispatcher is None else load(
            cfg.dispatcher, cfg.sources.get("dispatcher", "default"))
        profile = cfg.worker_profile or DEFAULT_PROFILE
        return cls(argv=cfg.worker_cmd or REFERENCE_WORKER, probe_argv=probe,
                   env={"REFERENCE_WORKER_BUGS": cfg.worker_bugs} if cfg.worker_bugs else {},
                   dispatcher=dispatcher, profile=profile,
                   wait_ready="ready" in profile.features, ready_timeout=cfg.ready_timeout)


class World:
    """Connections, links, servers and workers of one run."""

    def __init__(self, *, direct: Connections, proxied: Connections, links: Faults,
                 sink: Sink | None, servers: Mapping[str, Any], worker: WorkerSpec,
                 artifacts: Path, worker_links: LinkPool | None = None) -> None:
        self.direct = direct
        self.proxied = proxied  # through the shared links: the producer's
        self.links = links
        self.worker_links = worker_links  # None: every worker shares ``links``
        self.sink = sink
        self.servers = dict(servers)  # name -> a Service with stopped(), if embedded
        self.worker = worker
        self.artifacts = artifacts
        self.pool: WorkerPool | None = None
        self.struck: set[str] = set()  # workers the nemesis holds down (killed or signalled)
        self.supervisor = Supervisor()
        self.up_since: float | None = None  # monotonic: when every worker was ready

    def start_workers(self, size: int, policy: Policy) -> WorkerPool:
        """Start ``size`` workers connected through the fault proxy, each through its own
        links (``worker_links``, grown or shrunk to ``size``), and wait until each is ready
        (``WorkerSpec.wait_ready``; else until each has stayed up through its startup check);
        then limit each one's cgroup to its settled memory plus the policy's
        ``memory_limit_mb`` (where the harness can)."""
        if self.pool is not None:
            raise RuntimeError("the workers of this run are already started")
        conns: Connections | list[Connections] = self.proxied
        if self.worker_links is not None:
            conns = [links.proxied(self.direct) for links in self.worker_links.ensure(size)]
        pool = WorkerPool(conns, policy, size=size, argv=self.worker.argv,
                          logdir=self.artifacts, extra_env=self.worker.env,
                          startup_check=0.2, report_database_url=self.direct.database_url)
        pool.start()
        if self.worker.wait_ready:
            with ReadyRows(self.direct.database_url) as ready:
                pool.wait_ready(ready, self.worker.ready_timeout)
        pool.impose_memory_limits(policy.memory_limit_mb)
        self.pool, self.up_since = pool, time.monotonic()
        return pool

    def ready_timeout(self) -> float | None:
        """The bound on a worker process becoming ready (None: it does not signal it)."""
        return self.worker.ready_timeout if self.worker.wait_ready else None

    def links_to(self, service: str, worker: int | None = None) -> list[FaultLink]:
        """The links to ``service`` a fault strikes: worker ``worker``'s own, or (None) every
        worker's and the producer's."""
        if self.worker_links is None or self.pool is None:
            return [self.links[service]]
        if worker is not None:
            return [self.worker_links[worker][service]]
        return [self.links[service], *(links[service] for links in self.worker_links)]

    def heal_links(self) -> None:
        """Heal every link of the run (shared and per worker; all are attempted)."""
        pool = [self.worker_links.heal_all] if self.worker_links is not None else []
        attempt_all([self.links.heal_all, *pool])

    @property
    def workers(self) -> list[WorkerProcess]:
        if self.pool is None:
            raise RuntimeError("no workers: start them first (ChaosRun.start_workers or a plan)")
        return self.pool.workers

    def index_of(self, worker_id: str) -> int:
        for i, w in enumerate(self.workers):
            if w.worker_id == worker_id:
                return i
        raise KeyError(f"no worker named {worker_id!r} (workers: "
                       f"{', '.join(w.worker_id for w in self.workers)}); every row a worker "
                       "writes must carry exactly its CHAOS_WORKER_ID")

    def started(self) -> dict[str, float]:
        """Worker id -> the Unix time its current process started."""
        now_wall, now = time.time(), time.monotonic()
        return {w.worker_id: now_wall - (now - w.started_at) for w in self.workers}

    def check_workers(self) -> None:
        """Supervise: restart (after its backoff) a worker that exited and that the nemesis
        does not hold down. Its exit stays in its ``life`` for the checkers."""
        if self.pool is not None:
            self.supervisor.look(self.pool.workers, held=self.struck)

    def restart(self, index: int) -> None:
        """Start worker ``index`` again, as a supervisor would."""
        w = self.workers[index]
        w.restart()
        self.struck.discard(w.worker_id)

    def stop(self, grace: float) -> None:
        if self.pool is not None:
            self.pool.stop(grace=grace)
