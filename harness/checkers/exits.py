"""How each worker process ended and whether it became ready, judged from the workers' lives
(``life`` ops), the nemesis's strikes and the attempts. Cost: O(lives x (strikes + attempts)).

- ``exited``: a worker process exited while the run went on though the harness had sent it
  nothing that ends a process (its life has no ``signalled``, and no kill, signal or pause of
  the nemesis on that worker was in force): it died by itself (a crash on a link error, an
  unhandled exception, the kernel's OOM killer). The harness restarted it as a supervisor
  would; the faults active when it exited are evidence. Exits after the drain ended (the
  final stop) are not judged. A process that died while running an attempt of a job built to
  take its process down (a ``crash`` or ``alloc`` step: the job of an in-process worker) is the
  job's doing: counted in ``exits_by_job``, not an anomaly.
- ``not_ready``: a worker process that ran longer than ``policy.ready_timeout`` (fault time
  not counted) without signalling readiness: restarted, it never came back to consume. Judged
  only when the policy has a ``ready_timeout`` (the worker signals readiness).
"""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from harness.checkers.facts import Facts
from harness.checkers.findings import Findings
from harness.checkers.intervals import minus, rel, total, union
from harness.checkers.policy import Policy
from harness.history import DISPATCH, FaultSpan, History
from harness.nemesis.events import WORKER_KILLS

KINDS = ("exited", "not_ready")
# Strikes on a worker that may end its process: its exit then is the nemesis's doing.
ENDING = WORKER_KILLS | {"signal", "restart", "pause"}
TAKES_DOWN = frozenset({"crash", "alloc"})  # steps that may end the process running them
SLACK = 0.25  # seconds: the harness stamps an exit when it polls; clocks differ a little
INF = float("inf")


class Ran(Protocol):
    """An attempt, as the ``workers`` checker reads it."""

    @property
    def index(self) -> int: ...
    @property
    def code(self) -> int: ...
    @property
    def worker(self) -> str: ...
    @property
    def at(self) -> float: ...
    @property
    def ended(self) -> float | None: ...


def judge_exits(out: Findings, fx: Facts, lives: Sequence[int], attempts: Sequence[Ran],
                spans: Sequence[FaultSpan], run_end: float | None) -> int:
    """Add an ``exited`` anomaly for each exit that was the worker's own; the number of exits
    that were a job's doing. ``run_end``: when the drain ended (None: unknown)."""
    h = fx.h
    takes_down = _jobs_that_take_down(fx)
    by_job = 0
    for i in lives:
        v = h.values[i]
        ended, worker = v.get("ended"), str(v.get("worker"))
        if not isinstance(ended, int | float):
            continue
        signalled = v.get("signalled")
        if isinstance(signalled, int | float) and signalled <= ended + SLACK:
            continue  # the harness signalled it: a kill, a stop signal, the final stop
        if run_end is not None and ended >= run_end:
            continue  # stopped with the run
        if any(s.target == worker and s.kind in ENDING and s.start - SLACK <= ended
               and (s.end is None or ended <= s.end + SLACK) for s in spans):
            continue  # a strike of the nemesis was in force on it
        running = [a for a in attempts if a.worker == worker and v["at"] - SLACK <= a.at
                   <= ended and (a.ended is None or a.ended >= ended - SLACK)]
        if any(a.code in takes_down for a in running):
            by_job += 1
            continue
        active = [s for s in spans if s.start <= ended and (s.end is None or s.end >= ended)]
        later = _next_life(h, lives, i)
        out.add("exited", None, _exit_detail(h, v, later, active, running, fx),
                [i, *([later] if later is not None else []), *(s.inject for s in active),
                 *(a.index for a in running)])
    return by_job


def judge_readiness(out: Findings, h: History, lives: Sequence[int], policy: Policy,
                    blackout: list[tuple[float, float]], ends: Mapping[int, float]) -> None:
    """Add a ``not_ready`` anomaly for each life that ran longer than the policy's
    ``ready_timeout``, outside ``blackout`` (fault time), without signalling readiness;
    ``ends``: life op -> when it stopped counting (its exit, a stop signal, the run's end)."""
    bound = policy.ready_timeout
    if bound is None:
        return
    for i in lives:
        v = h.values[i]
        if v.get("ready") is not None:
            continue
        start, stop = float(v["at"]), ends[i]
        waited = total(minus([(start, stop)], blackout)) if stop > start else 0.0
        if waited > bound:
            restarted = " (a restart)" if _earlier_life(h, lives, i) else ""
            out.add("not_ready", None,
                    f"{v.get('worker')}'s process started at {rel(h, start)}{restarted} and "
                    f"was not ready for {waited:.1f} s with no fault active (until "
                    f"{rel(h, stop)}); a worker process must signal readiness (a chaos_ready "
                    f"row) within the ready timeout, {bound:g} s", [i])


def blackout_of(spans: Sequence[FaultSpan]) -> list[tuple[float, float]]:
    """The time any of ``spans`` was in force."""
    return union((s.start, s.end if s.end is not None else INF) for s in spans)


def _exit_detail(h: History, v: Mapping[str, Any], later: int | None,
                 active: Sequence[FaultSpan], running: Sequence[Ran], fx: Facts) -> str:
    worker, ended, code = v.get("worker"), float(v["ended"]), v.get("code")
    how = f"with code {code}"
    if isinstance(code, int) and code < 0:
        try:
            how = f"killed by {signal.Signals(-code).name}, not sent by the harness"
        except ValueError:
            how = f"killed by signal {-code}"
    ready = v.get("ready")
    life = (f"{ended - float(v['at']):.2f} s after it started, "
            + (f"ready since {rel(h, ready)}" if ready is not None else "never ready"))
    text = f"{worker}'s process exited on its own {how} at {rel(h, ended)} ({life})"
    if running:
        text += "; it was running " + ", ".join(
            f"{fx.job(a.code)}" for a in running[:3])
    if active:
        text += "; faults active then: " + ", ".join(s.label() for s in active[:3])
    if later is not None:
        text += f"; restarted at {rel(h, h.values[later]['at'])}"
    return text + ": a worker must survive what it meets (a supervisor restarts it at a cost)"


def _jobs_that_take_down(fx: Facts) -> set[int]:
    """Codes of the jobs with a step that may end the process running it."""
    out = set()
    idx, codes = fx.of(DISPATCH)
    for i, c in zip(idx, codes, strict=True):
        v = fx.h.values[i]
        steps = v.get("steps") if fx.h.types[i] == "invoke" and isinstance(v, dict) else None
        for step in steps if isinstance(steps, list) else ():
            name = step.get("op", step.get("kind")) if isinstance(step, dict) else step
            if name in TAKES_DOWN:
                out.add(c)
    return out


def _same_worker(h: History, lives: Sequence[int], i: int) -> list[int]:
    worker = h.values[i].get("worker")
    return sorted((j for j in lives if h.values[j].get("worker") == worker),
                  key=lambda j: h.values[j]["at"])


def _next_life(h: History, lives: Sequence[int], i: int) -> int | None:
    mine = _same_worker(h, lives, i)
    k = mine.index(i)
    return mine[k + 1] if k + 1 < len(mine) else None


def _earlier_life(h: History, lives: Sequence[int], i: int) -> bool:
    return _same_worker(h, lives, i).index(i) > 0
