"""The proxied links of one stack (redis, postgres, smtp) and how they are made: one set shared
by the harness's own producer (``Faults``), and one set per worker (``LinkPool``), so a fault
can strike one worker's link while the others keep theirs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping

from harness.contract import Connections
from harness.toxiproxy.client import ToxiproxyClient

from .link import FaultLink
from .recorder import FaultRecorder


class Faults:
    """Links by service name: `faults.redis.down()`, `faults["postgres"].latency(100)`."""

    def __init__(
        self,
        client: ToxiproxyClient,
        links: Mapping[str, FaultLink],
        recorder: FaultRecorder | None = None,
    ) -> None:
        self.client = client
        self._links = dict(links)
        self.recorder = recorder

    @property
    def recorder(self) -> FaultRecorder | None:
        return self._recorder

    @recorder.setter
    def recorder(self, value: FaultRecorder | None) -> None:
        self._recorder = value
        for link in self._links.values():
            link.recorder = value

    def __getitem__(self, name: str) -> FaultLink:
        try:
            return self._links[name]
        except KeyError:
            known = ", ".join(sorted(self._links)) or "none"
            raise KeyError(f"no fault link named {name!r} (links: {known})") from None

    def __getattr__(self, name: str) -> FaultLink:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(str(exc)) from None

    def __iter__(self) -> Iterator[FaultLink]:
        return iter(self._links.values())

    def __contains__(self, name: object) -> bool:
        return name in self._links

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._links)

    def proxied(self, direct: Connections) -> Connections:
        """``direct`` (a worker's connections) with Redis, PostgreSQL and SMTP through the
        links, queue and credentials kept."""
        return dataclasses.replace(
            direct, redis_url=self.redis.url(direct.redis_url),
            database_url=self.postgres.url(direct.database_url),
            smtp_host=self.smtp.listen_host, smtp_port=self.smtp.listen_port)

    def heal_all(self) -> None:
        """Heal every link (all are attempted; the first error is raised at the end)."""
        attempt_all([link.heal_all for link in self._links.values()])


def attempt_all(calls: Iterable[Callable[[], object]]) -> None:
    """Call each of ``calls``, all of them even when some fail; then raise the first error
    (healing must never stop half way)."""
    errors: list[Exception] = []
    for call in calls:
        try:
            call()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


def create_links(
    client: ToxiproxyClient,
    upstreams: Mapping[str, str],
    *,
    prefix: str = "jobchaos",
    listen_host: str = "127.0.0.1",
    recorder: FaultRecorder | None = None,
) -> Faults:
    """One proxy per service, `{prefix}_{service}` -> upstream, created or kept (populate)."""
    specs = [
        {"name": f"{prefix}_{svc}", "listen": f"{listen_host}:0", "upstream": upstream}
        for svc, upstream in upstreams.items()
    ]
    for spec in specs:  # a stale proxy of the same name (earlier run) would keep its port
        client.delete_proxy(str(spec["name"]), missing_ok=True)
    proxies = {p.name: p for p in client.populate(specs)}
    links = {
        svc: FaultLink(client, svc, proxies[f"{prefix}_{svc}"], recorder=recorder)
        for svc in upstreams
    }
    return Faults(client, links, recorder)


def delete_links(faults: Faults) -> None:
    for link in faults:
        faults.client.delete_proxy(link.proxy_name, missing_ok=True)


class LinkPool:
    """One :class:`Faults` per worker: worker ``i`` (0-based) connects through proxies
    ``{prefix}_w{i + 1}_{service}``. :meth:`ensure` grows or shrinks the pool to a run's
    number of workers; :meth:`close` deletes every proxy it made."""

    def __init__(self, client: ToxiproxyClient, upstreams: Mapping[str, str], *,
                 prefix: str = "jobchaos", listen_host: str = "127.0.0.1") -> None:
        self.client = client
        self.upstreams = dict(upstreams)
        self.prefix = prefix
        self.listen_host = listen_host
        self._sets: list[Faults] = []

    def __len__(self) -> int:
        return len(self._sets)

    def __getitem__(self, worker: int) -> Faults:
        return self._sets[worker]

    def __iter__(self) -> Iterator[Faults]:
        return iter(self._sets)

    def ensure(self, workers: int) -> list[Faults]:
        """Exactly ``workers`` link sets: the missing ones created (one populate request),
        the surplus ones deleted; the kept ones are reused as they are."""
        for extra in self._sets[workers:]:
            delete_links(extra)
        del self._sets[workers:]
        missing = range(len(self._sets), workers)
        if missing:
            specs = [{"name": self._name(i, svc), "listen": f"{self.listen_host}:0",
                      "upstream": upstream}
                     for i in missing for svc, upstream in self.upstreams.items()]
            for spec in specs:  # a stale proxy of the same name would keep its port
                self.client.delete_proxy(str(spec["name"]), missing_ok=True)
            proxies = {p.name: p for p in self.client.populate(specs)}
            self._sets += [Faults(self.client, {
                svc: FaultLink(self.client, svc, proxies[self._name(i, svc)])
                for svc in self.upstreams}) for i in missing]
        return list(self._sets)

    def heal_all(self) -> None:
        """Heal every worker's links (all are attempted; the first error is raised)."""
        attempt_all([links.heal_all for links in self._sets])

    def close(self) -> None:
        """Delete every proxy of the pool."""
        self.ensure(0)

    def _name(self, worker: int, service: str) -> str:
        return f"{self.prefix}_w{worker + 1}_{service}"
