"""The nemesis vocabulary: every fault a scenario can inflict, as a plain value.

An :class:`Event` says *what* (``kind``), *to whom* (``target``), *when* (a :class:`Trigger`),
*for how long* (``duration``, after which it is healed) and with which ``params``. A
:class:`Plan` is a whole scenario as data: the workers, the jobs, and the events. Because it
is data, any scenario can be printed, saved, replayed from a file and shrunk
(:mod:`harness.search`); :mod:`harness.nemesis.interpreter` is the one place that applies it.

Kinds:

- worker faults, ``target`` a worker index or ``"busy"`` (a worker running an attempt when
  the event fires, waited for): ``kill`` (SIGKILL the worker and its job processes;
  restarted after ``duration``, as a supervisor would), ``kill_job`` (SIGKILL only the
  processes running the job), ``signal`` (``params.signal``, ``params.count`` times; healed by
  restarting the worker once it has exited), ``pause`` (SIGSTOP, SIGCONT after ``duration``:
  a GC pause or a frozen VM), ``restart`` (a deploy: SIGTERM, wait for the exit, start again);
- link faults, ``target`` ``redis``, ``postgres`` or ``smtp``, healed after ``duration``:
  ``down``, ``latency``, ``blackhole``, ``reset_peer``, ``idle_close``, ``bandwidth``,
  ``slice``; ``params`` are the keyword arguments of :class:`harness.faults.FaultLink`'s method
  of that name (``{"ms": 200}`` for latency). They strike every worker's link to that service
  (and the producer's), unless ``params.worker`` (a worker index or ``"busy"``) names the one
  worker whose own link they strike;
- job events, ``target`` a job id: ``dispatch`` (the first dispatch of a job held back from the
  start, e.g. work sent after a heal) and ``redispatch`` (the same job sent again: a producer
  retry, a scheduler firing twice); ``params`` ``through_proxy`` and ``timeout``;
- ``restart_server``, ``target`` ``redis`` or ``postgres``: the server is stopped (gracefully,
  or with ``params.crash`` SIGKILLed) and started again on the same port after ``duration``;
- ``kill_host``, ``target`` a job id: a job that crashes whatever runs it (an in-process worker
  with no fork, an OOM of the whole container). From its trigger on, each time an attempt of
  the job starts, the worker running it is SIGKILLed (one inject and heal per kill, with that
  attempt in flight) and restarted ``duration`` s later; it stops once the job has a terminal
  outcome (or after :func:`harness.nemesis.crashloop.bound` seconds).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from harness.contract import Job

WORKER_FAULTS: Final = ("kill", "kill_job", "signal", "pause", "restart")
LINK_FAULTS: Final = ("down", "latency", "blackhole", "reset_peer", "idle_close", "bandwidth",
                      "slice")
JOB_EVENTS: Final = ("dispatch", "redispatch")
SERVER_FAULTS: Final = ("restart_server",)
JOB_FAULTS: Final = ("kill_host",)
# The events that SIGKILL a whole worker (its attempt in flight dies with it).
WORKER_KILLS: Final = frozenset({"kill", "kill_host"})
# The signals that ask a worker to shut down (a deploy, a scale-down).
STOP_SIGNALS: Final = frozenset({"SIGTERM", "SIGINT", "SIGQUIT"})
KINDS: Final = (*WORKER_FAULTS, *LINK_FAULTS, *JOB_EVENTS, *SERVER_FAULTS, *JOB_FAULTS)
LINKS: Final = ("redis", "postgres", "smtp")
SERVERS: Final = ("redis", "postgres")
BUSY: Final = "busy"


class PlanError(ValueError):
    """A plan or event that is not well formed (the message names the field)."""


@dataclass(frozen=True, slots=True)
class Trigger:
    """When an event fires: once ``attempts`` attempts have started, ``effects`` effect rows
    exist and ``finished`` jobs have a terminal outcome, and no sooner than ``at`` seconds
    after the nemesis started; then ``delay`` more seconds (a seeded pause, so the strike
    lands anywhere in a job)."""

    at: float = 0.0
    attempts: int = 0
    effects: int = 0
    finished: int = 0
    delay: float = 0.0

    def describe(self) -> str:
        parts = [f"t+{self.at:.2f}s"] if self.at or not (
            self.attempts or self.effects or self.finished) else []
        parts += [f"after {self.attempts} attempts"] if self.attempts else []
        parts += [f"after {self.effects} effects"] if self.effects else []
        parts += [f"after {self.finished} jobs finished"] if self.finished else []
        parts += [f"+{self.delay:.2f}s"] if self.delay else []
        return " ".join(parts)


def after(*, attempts: int = 0, effects: int = 0, finished: int = 0, at: float = 0.0,
          delay: float = 0.0) -> Trigger:
    """A trigger: ``after(effects=2)``, ``after(at=0.5)``, ``after(attempts=1, delay=0.1)``,
    ``after(finished=12)``."""
    return Trigger(at=at, attempts=attempts, effects=effects, finished=finished, delay=delay)


NOW: Final = Trigger()
TRIGGER_FIELDS: Final = ("at", "attempts", "effects", "finished", "delay")


@dataclass(frozen=True, slots=True)
class Event:
    """One thing the nemesis does (see the module docstring for the kinds)."""

    kind: str
    target: int | str
    when: Trigger = NOW
    duration: float = 0.0
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise PlanError(f"unknown event kind {self.kind!r}; one of {', '.join(KINDS)}")
        if self.kind in WORKER_FAULTS and not (isinstance(self.target, int) or
                                                self.target == BUSY):
            raise PlanError(f"{self.kind}: target must be a worker index or {BUSY!r}, "
                            f"not {self.target!r}")
        if self.kind in LINK_FAULTS and self.target not in LINKS:
            raise PlanError(f"{self.kind}: target must be one of {', '.join(LINKS)}")
        if self.kind in LINK_FAULTS and "worker" in self.params and not (
                _is_index(self.params["worker"]) or self.params["worker"] == BUSY):
            raise PlanError(f"{self.kind}: worker must be a worker index or {BUSY!r}, not "
                            f"{self.params['worker']!r}")
        if self.kind in SERVER_FAULTS and self.target not in SERVERS:
            raise PlanError(f"{self.kind}: target must be one of {', '.join(SERVERS)}")
        if self.kind in JOB_FAULTS and not isinstance(self.target, str):
            raise PlanError(f"{self.kind}: target must be a job id, not {self.target!r}")
        if self.duration < 0:
            raise PlanError(f"{self.kind}: duration must be >= 0, not {self.duration}")

    def describe(self) -> str:
        what = {"kill": "SIGKILL worker", "kill_job": "SIGKILL the job process of worker",
                "signal": f"{self.params.get('signal', 'SIGTERM')} x{self.params.get('count', 1)}"
                          " to worker",
                "pause": "SIGSTOP worker", "restart": "restart worker",
                "dispatch": "dispatch job", "redispatch": "re-dispatch job",
                "restart_server": "restart server",
                "kill_host": "SIGKILL the worker at each attempt of job",
                }.get(self.kind, f"{self.kind} on link")
        args = "".join(f" {k}={v}" for k, v in sorted(self.params.items())
                       if self.kind not in ("signal",) and k != "worker")
        lasting = f" for {self.duration:.2f}s" if self.duration else ""
        if self.kind in JOB_FAULTS:
            lasting = f", restarted after {self.duration:.2f}s" if self.duration else ""
        whose = f" of worker {self.params['worker']}" if self.link_worker is not None else ""
        return f"{self.when.describe()}: {what} {self.target}{whose}{args}{lasting}"

    @property
    def link_worker(self) -> int | str | None:
        """The one worker whose link a link fault strikes (None: every worker's)."""
        if self.kind not in LINK_FAULTS:
            return None
        worker: int | str | None = self.params.get("worker")
        return worker

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "target": self.target}
        if self.when != NOW:
            out["when"] = {k: getattr(self.when, k) for k in TRIGGER_FIELDS
                           if getattr(self.when, k)}
        if self.duration:
            out["duration"] = self.duration
        if self.params:
            out["params"] = dict(self.params)
        return out

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> Event:
        try:
            when = body.get("when") or {}
            unknown = set(when) - set(TRIGGER_FIELDS)
            if unknown:
                raise PlanError(f"unknown trigger field(s) {sorted(unknown)}; known: "
                                f"{', '.join(TRIGGER_FIELDS)}")
            return cls(kind=str(body["kind"]), target=body["target"],
                       when=Trigger(at=float(when.get("at", 0)),
                                    attempts=int(when.get("attempts", 0)),
                                    effects=int(when.get("effects", 0)),
                                    finished=int(when.get("finished", 0)),
                                    delay=float(when.get("delay", 0))),
                       duration=float(body.get("duration", 0)),
                       params=dict(body.get("params") or {}))
        except KeyError as exc:
            raise PlanError(f"an event lacks the field {exc.args[0]!r}") from None
        except (TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, PlanError):
                raise
            raise PlanError(f"a malformed event {dict(body)!r}: {exc}") from None


# -- builders: what scenarios are written with ---------------------------------------------


def kill(worker: int | str = BUSY, when: Trigger = NOW, *, down: float = 0.0) -> Event:
    """SIGKILL a worker (a crash, the OOM killer); restarted ``down`` seconds later."""
    return Event("kill", worker, when, down)


def kill_job(worker: int | str = BUSY, when: Trigger = NOW) -> Event:
    """SIGKILL only the processes running the worker's job (the worker itself lives on)."""
    return Event("kill_job", worker, when)


def signal(worker: int | str = BUSY, when: Trigger = NOW, *, name: str = "SIGTERM",
           count: int = 1) -> Event:
    """Send ``name`` ``count`` times (SIGTERM: a deploy; twice: a cold stop); the worker is
    restarted once it has exited."""
    return Event("signal", worker, when, params={"signal": name, "count": count})


def pause(worker: int | str = BUSY, when: Trigger = NOW, *, seconds: float) -> Event:
    """Freeze a worker and its job processes for ``seconds`` (SIGSTOP, then SIGCONT)."""
    return Event("pause", worker, when, seconds)


def restart(worker: int | str = BUSY, when: Trigger = NOW) -> Event:
    """Restart a worker as a deploy does: SIGTERM, wait for it to exit, start it again."""
    return Event("restart", worker, when)


def link_fault(kind: str, link: str, when: Trigger = NOW, *, seconds: float,
               worker: int | str | None = None, **params: Any) -> Event:
    """A fault on a proxied link for ``seconds``: ``link_fault("latency", "redis", ms=200,
    seconds=1.0)``; ``params`` are those of the FaultLink method ``kind``. It strikes every
    worker's link to ``link``, or with ``worker`` (an index or ``"busy"``) that worker's
    only: ``link_fault("down", "redis", worker="busy", seconds=2.0)``."""
    if kind not in LINK_FAULTS:
        raise PlanError(f"unknown link fault {kind!r}; one of {', '.join(LINK_FAULTS)}")
    return Event(kind, link, when, seconds,
                 params if worker is None else {**params, "worker": worker})


def dispatch(job_id: str, when: Trigger = NOW, **params: Any) -> Event:
    """Dispatch a job of the plan later than the start (it is held back until then)."""
    return Event("dispatch", job_id, when, params=params)


def redispatch(job_id: str, when: Trigger = NOW, **params: Any) -> Event:
    """Dispatch a job again (a producer retry, a scheduler firing twice)."""
    return Event("redispatch", job_id, when, params=params)


def restart_server(server: str, when: Trigger = NOW, *, down: float = 0.0,
                   crash: bool = False) -> Event:
    """Stop ``redis`` or ``postgres`` (``crash``: SIGKILL it) and start it again ``down``
    seconds later."""
    return Event("restart_server", server, when, down, {"crash": True} if crash else {})


def kill_host(job_id: str, when: Trigger = NOW, *, down: float = 0.0) -> Event:
    """A job that crashes its host: SIGKILL the worker running ``job_id`` each time one of its
    attempts starts (until the job is terminal), restarting it ``down`` seconds later."""
    return Event("kill_host", job_id, when, down)


# -- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """A scenario as data: ``workers`` workers, ``jobs`` (dispatched at the start, except those
    a ``dispatch`` event names), and ``events`` applied in order, each once its trigger holds."""

    workers: int
    jobs: tuple[Job, ...]
    events: tuple[Event, ...] = ()

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise PlanError(f"a plan needs at least one worker, not {self.workers}")
        ids = [j.id for j in self.jobs]
        for e in self.events:
            if e.kind in WORKER_FAULTS and isinstance(e.target, int) and not (
                    0 <= e.target < self.workers):
                raise PlanError(f"{e.kind}: worker {e.target} does not exist (the plan has "
                                f"{self.workers} workers, 0..{self.workers - 1})")
            if isinstance(e.link_worker, int) and not 0 <= e.link_worker < self.workers:
                raise PlanError(f"{e.kind}: worker {e.link_worker} does not exist (the plan "
                                f"has {self.workers} workers, 0..{self.workers - 1})")
            if (e.kind in JOB_EVENTS or e.kind in JOB_FAULTS) and e.target not in ids:
                raise PlanError(f"{e.kind}: job {e.target!r} is not one of the plan's jobs")

    @property
    def held_back(self) -> frozenset[str]:
        """Jobs dispatched by a ``dispatch`` event instead of at the start."""
        return frozenset(str(e.target) for e in self.events if e.kind == "dispatch")

    def job(self, job_id: str) -> Job:
        return next(j for j in self.jobs if j.id == job_id)

    def describe(self) -> str:
        lines = [f"{len(self.jobs)} jobs, {self.workers} workers, {len(self.events)} events"]
        lines += [f"  {e.describe()}" for e in self.events]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"workers": self.workers,
                "jobs": [_job_dict(j) for j in self.jobs],
                "events": [e.to_dict() for e in self.events]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> Plan:
        if not isinstance(body, Mapping):
            raise PlanError("a plan must be a JSON object with workers, jobs and events")
        try:
            jobs = tuple(Job(id=str(j["id"]), steps=tuple(j["steps"]),
                             unique_key=j.get("unique_key")) for j in body["jobs"])
            events = tuple(Event.from_dict(e) for e in body.get("events", ()))
            return cls(workers=int(body["workers"]), jobs=jobs, events=events)
        except KeyError as exc:
            raise PlanError(f"a plan lacks the field {exc.args[0]!r}") from None
        except (TypeError, AttributeError) as exc:
            raise PlanError(f"a malformed plan: {exc}") from None

    def without_event(self, i: int) -> Plan:
        return replace(self, events=self.events[:i] + self.events[i + 1:])

    def with_jobs(self, keep: Iterable[str]) -> Plan:
        """The plan with only the jobs in ``keep`` (and the events that name none other)."""
        kept = set(keep)
        return replace(self, jobs=tuple(j for j in self.jobs if j.id in kept),
                       events=tuple(e for e in self.events
                                    if e.kind not in (*JOB_EVENTS, *JOB_FAULTS)
                                    or e.target in kept))


def _is_index(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _job_dict(j: Job) -> dict[str, Any]:
    body: dict[str, Any] = {"id": j.id, "steps": [dict(s) for s in j.steps]}
    if j.unique_key is not None:
        body["unique_key"] = j.unique_key
    return body


def plan(workers: int, jobs: Sequence[Job], *events: Event) -> Plan:
    """``plan(2, jobs, kill(when=after(effects=2)), ...)``."""
    return Plan(workers, tuple(jobs), tuple(events))
