"""The one interpreter of the nemesis vocabulary (:mod:`harness.nemesis.events`).

It waits for each event's trigger, applies the event to the run's world, and heals it when
its time comes; every fault is recorded as an ``inject`` and a ``heal`` op under one fault id,
with the attempts that were in flight when it struck (``params.inflight``: each attempt's job,
number, identity and worker). Healing always runs: at its due time on the normal path, at once
when the run errors. A ``kill_host`` event is a watch (:mod:`harness.nemesis.crashloop`) that
strikes on every attempt of its job until the job is terminal; the plan is performed once every
watch has ended and every fault is healed.
"""

from __future__ import annotations

import contextlib
import itertools
import signal as signals
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.faults.links import attempt_all
from harness.history import Recorder
from harness.nemesis.crashloop import Attempt, CrashLoop, bound
from harness.nemesis.events import (
    BUSY,
    JOB_FAULTS,
    LINK_FAULTS,
    STOP_SIGNALS,
    Event,
    Plan,
    PlanError,
    Trigger,
)
from harness.run.gauges import Gauges
from harness.run.policy import RunPolicy
from harness.run.workload import Workload
from harness.run.world import World

POLL = 0.02  # seconds between looks at triggers and due heals
# Seconds between repeated signals of one event: the kernel, and Python's own handler, merge a
# signal sent again before the first was handled, so two back to back may arrive as one.
SIGNAL_GAP = 0.25


class TriggerTimeout(TimeoutError):
    """An event's trigger did not hold within the policy's drain deadline."""


@dataclass
class Strike:
    """An applied fault, healed by ``undo`` once ``due`` (monotonic) has passed or, when
    ``ready`` is given, once it says so (``expire``, if given, runs at ``due`` instead when
    ``ready`` never came)."""

    fault_id: str
    event: Event
    target: str  # the worker id, link or server it struck
    due: float
    undo: Callable[[], Mapping[str, Any]]
    ready: Callable[[], bool] | None = None
    expire: Callable[[], Mapping[str, Any]] | None = None

    def time_to_heal(self, now: float) -> bool:
        return (self.ready() if self.ready is not None else False) or now >= self.due


class Nemesis:
    """Applies a plan's events to a run's world and records them."""

    def __init__(self, world: World, workload: Workload, gauges: Gauges, recorder: Recorder,
                 policy: Callable[[], RunPolicy], watch: Callable[[], None]) -> None:
        self.world = world
        self.watch = watch  # raises if a worker died unstruck or none consumes
        self.workload = workload
        self.gauges = gauges
        self.recorder = recorder
        self.policy = policy  # the run's policy, as it is when an event fires
        self.held = 0.0  # seconds the plan deliberately held faults or waited to strike
        self.kills = 0  # worker kills, each leaving recovery to a lease expiry
        self._ids = itertools.count(1)
        self._strikes: list[Strike] = []
        self._loops: list[CrashLoop] = []  # kill_host watches, until their job is terminal

    # -- the loop ----------------------------------------------------------------------------
    def perform(self, plan: Plan) -> None:
        """Apply every event of ``plan`` in order, then heal everything (waiting out each
        fault's duration); on an error, heal everything at once and re-raise."""
        start = time.monotonic()
        try:
            for event in plan.events:
                self._await(event.when, start)
                self._apply(event, plan)
            while self._strikes or self._loops:
                if self._loops:
                    self.watch()
                self._heal_due()
                if self._strikes or self._loops:
                    time.sleep(POLL)
        finally:
            self.heal_all()

    def heal_all(self) -> None:
        """Heal every fault still in place now (errors are suppressed: this is cleanup)."""
        self._loops.clear()
        while self._strikes:
            strike = self._strikes.pop(0)
            with contextlib.suppress(Exception):
                self._heal(strike, strike.undo)

    def _await(self, when: Trigger, start: float) -> None:
        limit = self.policy().for_checkers().drain_deadline_s
        t0 = time.monotonic()
        deadline = t0 + limit
        seen = (0, 0, 0)
        while True:
            self.watch()
            self._heal_due()
            if time.monotonic() >= start + when.at:
                with contextlib.suppress(Exception):  # a restarting server: look again
                    seen = (self.gauges.attempts() if when.attempts else 0,
                            self.gauges.effects() if when.effects else 0,
                            len(self.gauges.terminal_jobs()) if when.finished else 0)
                    if (seen[0] >= when.attempts and seen[1] >= when.effects
                            and seen[2] >= when.finished):
                        break
            if time.monotonic() >= deadline:
                raise TriggerTimeout(
                    f"the nemesis waited {limit:.1f} s for its trigger ({when.describe()}); "
                    f"saw {seen[0]} attempts, {seen[1]} effect rows, {seen[2]} jobs finished")
            time.sleep(POLL)
        # Waiting for a moment is forced on the run; waiting for work to happen is not.
        self.held += max(0.0, min(time.monotonic(), start + when.at) - t0) + when.delay
        end = time.monotonic() + when.delay
        while time.monotonic() < end:
            self._heal_due()
            time.sleep(min(POLL, max(0.0, end - time.monotonic())))

    def _heal_due(self) -> None:
        now = time.monotonic()
        for strike in [s for s in self._strikes if s.time_to_heal(now)]:
            self._strikes.remove(strike)
            ready = strike.ready is None or strike.ready()
            self._heal(strike, strike.undo if ready or strike.expire is None else strike.expire)
        self._crash_loops()

    # -- applying events ---------------------------------------------------------------------
    def _apply(self, event: Event, plan: Plan) -> None:
        if event.kind == "dispatch":
            self.workload.dispatch(plan.job(str(event.target)), **_dispatch_args(event))
            return
        if event.kind in JOB_FAULTS:  # a watch: each kill is recorded under its own id
            limit = bound(self.policy(), event.duration)
            self._loops.append(CrashLoop(event, time.monotonic() + limit))
            self._crash_loops()
            return
        fault_id = f"{event.kind}-{next(self._ids)}"
        if event.kind in LINK_FAULTS:
            self._link_fault(fault_id, event)
        elif event.kind == "redispatch":
            self._record("inject", fault_id, event, str(event.target), {})
            self.workload.dispatch(plan.job(str(event.target)), **_dispatch_args(event))
            self._record("heal", fault_id, event, str(event.target), {})
        elif event.kind == "restart_server":
            self._restart_server(fault_id, event)

        else:
            self._worker_fault(fault_id, event)

    def _link_fault(self, fault_id: str, event: Event) -> None:
        """Strike every worker's link to the service (and the producer's), or one worker's
        (``params.worker``); the inject op names the proxies struck (``params.links``)."""
        service = str(event.target)
        who = event.link_worker
        index = None if who is None else self._worker_index(who)
        args = {k: v for k, v in event.params.items() if k != "worker"}
        faults = []
        try:
            for link in self.world.links_to(service, index):
                faults.append(getattr(link, event.kind)(**args))
        except BaseException:
            for fault in faults:
                with contextlib.suppress(Exception):
                    fault.heal()
            raise
        struck: dict[str, Any] = {"links": [f.link.proxy_name for f in faults]}
        if index is not None:
            struck["worker"] = self.world.workers[index].worker_id
        params = dict(faults[0].params)
        if "toxics" in params:
            params["toxics"] = [t for f in faults for t in f.params.get("toxics", ())]
        self._inject(fault_id, event, service, {**params, **struck},
                     inflight=struck.get("worker"))
        self.held += event.duration

        def undo() -> Mapping[str, Any]:
            attempt_all([fault.heal for fault in faults])
            return struck

        self._strikes.append(Strike(fault_id, event, service, time.monotonic() + event.duration,
                                    undo))

    def _restart_server(self, fault_id: str, event: Event) -> None:
        server = self.world.servers.get(str(event.target))
        if server is None:
            raise PlanError(f"restart_server: {event.target} is not a server this harness "
                            "started (external servers cannot be restarted by the harness)")
        crash = bool(event.params.get("crash", False))
        stopped = server.stopped(crash=crash)
        self._inject(fault_id, event, str(event.target), {"port": server.port, "crash": crash},
                     inflight=None)
        stopped.__enter__()
        self.held += event.duration

        def undo() -> Mapping[str, Any]:
            stopped.__exit__(None, None, None)
            return {"port": server.port}

        self._strikes.append(Strike(fault_id, event, str(event.target),
                                    time.monotonic() + event.duration, undo))

    def _worker_fault(self, fault_id: str, event: Event) -> None:
        index = self._worker_index(event.target)
        w = self.world.workers[index]
        now = time.monotonic()

        def restart() -> Mapping[str, Any]:
            self.world.restart(index)
            return {"restarted": True, "pid": w.pid}

        if event.kind == "kill":
            w.pause()  # frozen, it starts no attempt between the record and the kill
            try:
                self._inject(fault_id, event, w.worker_id, {"pid": w.pid, "signal": "SIGKILL"},
                             inflight=w.worker_id)
            finally:
                self.world.struck.add(w.worker_id)
                w.kill()
            self.kills += 1
            self._strikes.append(Strike(fault_id, event, w.worker_id, now + event.duration,
                                        restart))
        elif event.kind == "kill_job":
            pids = w.job_pids()
            self._inject(fault_id, event, w.worker_id, {"pids": pids, "signal": "SIGKILL"},
                         inflight=w.worker_id)
            killed = w.kill_jobs()
            self._record("heal", fault_id, event, w.worker_id, {"killed": killed})
        elif event.kind == "pause":
            self._inject(fault_id, event, w.worker_id,
                         {"pid": w.pid, "signal": "SIGSTOP",
                          "jobs": w.job_pids()}, inflight=w.worker_id)
            w.pause()
            self.held += event.duration

            def resume() -> Mapping[str, Any]:
                w.resume()
                return {"signal": "SIGCONT"}

            self._strikes.append(Strike(fault_id, event, w.worker_id, now + event.duration,
                                        resume))
        else:  # signal, restart
            name = str(event.params.get("signal", "SIGTERM"))
            count = int(event.params.get("count", 1))
            self._inject(fault_id, event, w.worker_id, {"pid": w.pid, "signal": name,
                                                        "count": count}, inflight=w.worker_id)
            self.world.struck.add(w.worker_id)
            for n in range(count):
                if n:
                    time.sleep(SIGNAL_GAP)
                w.signal(signals.Signals[name])
            bound = self.policy().shutdown_grace + self.policy().job_timeout + 2

            def expire() -> Mapping[str, Any]:
                if event.kind == "restart":
                    w.kill()
                    return {**restart(), "exited": False, "killed_after": bound}
                if name in STOP_SIGNALS:
                    raise TimeoutError(f"{w.worker_id} did not exit within {bound:.1f} s of "
                                       f"its {name} (shutdown grace "
                                       f"{self.policy().shutdown_grace} s)")
                self.world.struck.discard(w.worker_id)
                return {"exited": False}

            signalled = w.pid

            def gone() -> bool:  # the process signalled has exited (maybe restarted since)
                return w.pid != signalled or not w.running()

            def heal() -> Mapping[str, Any]:
                if w.pid != signalled:  # two signals, one exit: an earlier heal restarted it
                    return {"exited": True, "restarted_by": "an earlier heal"}
                return restart()

            self._strikes.append(Strike(fault_id, event, w.worker_id, now + bound, heal,
                                        ready=gone, expire=expire))

    def _crash_loops(self) -> None:
        """Strike every attempt that a ``kill_host`` watch says is due; end finished watches."""
        for loop in list(self._loops):
            try:
                due = loop.due(self.gauges, self.world.started(),
                               lambda worker: self.world.workers[
                                   self.world.index_of(worker)].running())
            except KeyError:  # a worker id not in the pool: said once, by index_of
                raise
            except Exception:  # a restarting server: look again
                continue
            if due is None:
                self._loops.remove(loop)
            for attempt in due or ():
                self._kill_host(loop, attempt)

    def _kill_host(self, loop: CrashLoop, attempt: Attempt) -> None:
        index = self.world.index_of(attempt.worker)
        w = self.world.workers[index]
        fault_id = f"{loop.event.kind}-{next(self._ids)}"
        self._record("inject", fault_id, loop.event, w.worker_id,
                     {"pid": w.pid, "signal": "SIGKILL", "inflight": [attempt.as_inflight()]})
        self.world.struck.add(w.worker_id)
        w.kill()
        self.kills += 1
        loop.struck.add(attempt.attempt_id)

        def restart() -> Mapping[str, Any]:
            self.world.restart(index)
            return {"restarted": True, "pid": w.pid}

        self._strikes.append(Strike(fault_id, loop.event, w.worker_id,
                                    time.monotonic() + loop.event.duration, restart))

    def _worker_index(self, target: int | str) -> int:
        if isinstance(target, int):
            return target
        assert target == BUSY
        return self.world.index_of(self._busy_worker())

    def _busy_worker(self) -> str:
        """The worker running an attempt now, on its live process (of several, the one that
        wrote the newest effect): waited for up to the policy's drain deadline, since killing
        a worker that has not consumed yet tests nothing. Once every dispatched job is
        terminal none will come: then the worker that ran the newest attempt (the strike
        interrupts nothing, and the verdict says so)."""
        limit = self.policy().for_checkers().drain_deadline_s
        deadline = time.monotonic() + limit
        while True:
            found: str | None = None
            with contextlib.suppress(Exception):  # a restarting server: look again
                busy = self.gauges.busy_workers(self._live())
                if busy:
                    found = busy[0]
                elif set(self.workload.dispatched) <= self.gauges.terminal_jobs():
                    found = self.gauges.newest_worker("chaos_attempts")
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                raise TriggerTimeout(
                    f"the nemesis waited {limit:.1f} s for a worker running an attempt (target "
                    f"{BUSY!r}); none did, and jobs are still unfinished")
            self.watch()
            self._heal_due()
            time.sleep(POLL)

    def _live(self) -> dict[str, float]:
        """Worker id -> the Unix start time of its process, for the workers running now."""
        started = self.world.started()
        return {w.worker_id: started[w.worker_id] for w in self.world.workers if w.running()}

    # -- recording ---------------------------------------------------------------------------
    def _inject(self, fault_id: str, event: Event, target: str, params: Mapping[str, Any],
                *, inflight: str | None) -> None:
        """Record the strike with the attempts in flight (of ``inflight``, a worker id, or
        of every worker when None): those running on a live worker process, so a strike with
        none (``params.inflight == []``) interrupted nothing."""
        running: list[dict[str, Any]] | None = None
        with contextlib.suppress(Exception):
            running = self.gauges.inflight(inflight, self._live())
        self._record("inject", fault_id, event, target, {**params, "inflight": running})

    def _heal(self, strike: Strike, undo: Callable[[], Mapping[str, Any]]) -> None:
        try:
            result = dict(undo())
        except BaseException as exc:
            self._record("heal", strike.fault_id, strike.event, strike.target,
                         {"error": str(exc)})
            raise
        self._record("heal", strike.fault_id, strike.event, strike.target, result)

    def _record(self, phase: str, fault_id: str, event: Event, target: str,
                params: Mapping[str, Any]) -> None:
        self.recorder.record_fault(phase, fault_id, target, event.kind,  # type: ignore[arg-type]
                                   {**params, "duration": event.duration})


def _dispatch_args(event: Event) -> dict[str, Any]:
    return {k: event.params[k] for k in ("through_proxy", "timeout") if k in event.params}
