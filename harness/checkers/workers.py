"""Did every worker keep running and consuming, and shut down the way a deploy needs?
Cost: O(n log n).

Judged from the workers' lives (``life`` ops: when each process started, became ready and
exited, as the harness saw it), the attempts, the dispatches and the nemesis's fault spans:

- ``stalled``: a worker alive and ready, not shutting down, not running an attempt, while
  some job was ready to run and waiting, for longer than ``policy.consume_bound_s``, with no
  fault active anywhere (the bound starts again when a fault heals). The consumer that
  silently stopped after a reconnect, while its process looks healthy and the other workers
  do all the work. A process is judged from its ready signal on (a slow start is not a
  stall); one that never signalled it, when the workers do, is judged by ``not_ready``.
- ``dropped_on_shutdown``: a worker sent a stop signal (SIGTERM, SIGINT, SIGQUIT) while it ran
  an attempt, and that attempt never ended by the worker's own hand: a reaper found its lease
  expired (``lease_lost``), or nothing ended it at all. Even when the job completed later: the
  deploy dropped the job on the floor and recovery took a lease.
- ``slow_shutdown``: a worker that exited longer than ``shutdown_grace + shutdown_slack``
  after its stop signal (not judged while another fault could hold up its bookkeeping).

- ``exited`` and ``not_ready``: a process that exited by itself mid-run, one that never became
  ready (:mod:`harness.checkers.exits`).

Histories without ``life`` ops (no harness-run workers) are not judged (``workers: 0``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.checkers import exits
from harness.checkers.facts import Facts, facts
from harness.checkers.findings import Findings
from harness.checkers.identity import label
from harness.checkers.intervals import Interval, intersect, minus, rel, union
from harness.checkers.model import CheckResult
from harness.checkers.policy import Policy
from harness.history import DISPATCH, LIFE, FaultSpan, History
from harness.nemesis.events import STOP_SIGNALS, WORKER_KILLS

NAME = "workers"
KINDS = ("stalled", "dropped_on_shutdown", "slow_shutdown", *exits.KINDS)
STOPPING_KINDS = frozenset({"signal", "restart"})
NOT_FAULTS = frozenset({"redispatch", "kill_job"})  # events that hold no worker back
INF = float("inf")


@dataclass(frozen=True, slots=True)
class Attempt:
    index: int  # the attempt op
    code: int
    worker: str
    at: float
    ended: float | None
    status: Any
    reason: Any
    number: Any  # as the worker counted it: two attempts may share one
    ident: Any  # ``attempt_id``: its identity


def check_workers(history: History, policy: Policy) -> CheckResult:
    fx = facts(history)
    out = Findings(NAME, policy, fx, KINDS)
    lives = history.indices(LIFE)
    if not lives:
        return out.result(workers=0)  # not a run of harness-started workers: nothing to judge
    attempts = _attempts(fx)
    spans = [s for s in history.fault_spans() if s.kind not in NOT_FAULTS]
    stops = [s for s in spans if _is_stop(s)]
    run_end = history.walls[fx.drain_end[-1]] if fx.drain_end else None
    ends = _counting_ends(history, lives, stops, run_end)
    blackout = exits.blackout_of(spans)
    judged = _shutdowns(out, history, policy, lives, attempts, stops, spans)
    _stalls(out, fx, policy, lives, attempts, ends, blackout)
    by_job = exits.judge_exits(out, fx, lives, attempts, spans, run_end)
    exits.judge_readiness(out, history, lives, policy, blackout, ends)
    workers = {history.values[i].get("worker") for i in lives}
    return out.result(workers=len(workers), worker_processes=len(lives),
                      shutdowns_judged=judged, exits_by_job=by_job)


def _counting_ends(h: History, lives: Sequence[int], stops: list[FaultSpan],
                   run_end: float | None) -> dict[int, float]:
    """Life op -> when the process stopped counting as a consumer: its exit, a stop signal
    (from then on it is shutting down), or the end of the run (the drain's end, else the last
    exit or op seen)."""
    end = run_end if run_end is not None else max(
        (h.values[i].get("ended") or h.walls[i] for i in lives), default=INF)
    out = {}
    for i in lives:
        v = h.values[i]
        start, stop = float(v["at"]), min(float(v.get("ended") or INF), end)
        out[i] = min([stop, *(s.start for s in stops
                              if s.target == v.get("worker") and start <= s.start)])
    return out


# -- shutdowns -------------------------------------------------------------------------------

def _is_stop(span: FaultSpan) -> bool:
    params = span.params if isinstance(span.params, dict) else {}
    return span.kind in STOPPING_KINDS and str(params.get("signal", "SIGTERM")) in STOP_SIGNALS


def _life_at(history: History, lives: Sequence[int], worker: str, t: float) -> int | None:
    """The life op of ``worker``'s process running at time ``t``."""
    for i in lives:
        v = history.values[i]
        if v.get("worker") == worker and v["at"] <= t and (v.get("ended") is None
                                                           or v["ended"] >= t):
            return i
    return None


def _shutdowns(out: Findings, h: History, policy: Policy, lives: Sequence[int],
               attempts: list[Attempt], stops: list[FaultSpan], spans: list[FaultSpan]) -> int:
    judged = 0
    for stop in stops:
        t, worker = stop.start, stop.target
        life = _life_at(h, lives, worker, t)
        exited = h.values[life].get("ended") if life is not None else None
        struck_after = [s for s in spans if s is not stop and s.target == worker
                        and (s.kind in WORKER_KILLS or s.kind == "pause")
                        and t <= s.start <= (exited or INF)]
        born = h.values[life]["at"] if life is not None else -INF
        for a in attempts:
            if a.worker != worker or a.at > t or (a.ended is not None and a.ended < t):
                continue
            if a.at < born:
                continue  # an attempt of an earlier process of this worker (killed before)
            if struck_after:
                continue  # the harness killed or froze it too: not the worker's own doing
            if a.reason == "lease_lost" or (a.ended is None and exited is not None):
                how = (f"a reaper found its lease expired at {rel(h, a.ended)}"
                       if a.ended is not None else "nothing ever ended it")
                out.add("dropped_on_shutdown", a.code,
                        f"{worker} was sent {_signal(stop)} at {rel(h, t)} while running "
                        f"{label(a.number, worker, a.ident)}; the worker never finished it nor "
                        f"gave it back: {how}", [stop.inject, a.index])
        if policy.shutdown_grace is None or life is None:
            continue
        others = [s for s in spans if s is not stop and s.start <= (exited or INF)
                  and (s.end is None or s.end >= t)]
        if others:
            continue  # another fault may hold up its bookkeeping: not judged
        judged += 1
        took = (exited if exited is not None else INF) - t
        allowed = policy.shutdown_grace + policy.shutdown_slack
        if took > allowed:
            when = f"{took:.2f} s after" if exited is not None else "never, after"
            out.add("slow_shutdown", None,
                    f"{worker} exited {when} its {_signal(stop)}; its shutdown grace is "
                    f"{policy.shutdown_grace:g} s (+{policy.shutdown_slack:g} s allowed for "
                    "bookkeeping): a supervisor would have SIGKILLed it mid-job",
                    [stop.inject, life])
    return judged


def _signal(span: FaultSpan) -> str:
    params = span.params if isinstance(span.params, dict) else {}
    name = str(params.get("signal", "SIGTERM"))
    count = params.get("count", 1)
    return name if count in (1, None) else f"{name} x{count}"


# -- stalls ----------------------------------------------------------------------------------

def _stalls(out: Findings, fx: Facts, policy: Policy, lives: Sequence[int],
            attempts: list[Attempt], ends: Mapping[int, float], blackout: list[Interval]
            ) -> None:
    h = fx.h
    waits = _waiting(fx, policy, attempts)
    if not waits:
        return
    waiting = union(w[:2] for w in waits)
    bound = policy.consume_bound_s
    by_worker: dict[str, list[Attempt]] = {}
    for a in attempts:
        by_worker.setdefault(a.worker, []).append(a)
    signals_ready = any(h.values[i].get("ready") is not None for i in lives)
    for i in lives:
        v = h.values[i]
        worker = v.get("worker")
        if v.get("ready") is None and signals_ready:
            continue  # never ready: starting, not stalled (``not_ready`` judges it)
        # From its ready signal (else its start) to its exit, a stop signal or the run's end.
        start, stop = float(v.get("ready") or v["at"]), ends[i]
        mine = sorted(by_worker.get(worker, ()), key=lambda a: a.at)
        busy = [(a.at, _busy_until(a, mine, stop)) for a in mine]
        free = minus(minus([(start, stop)], union(busy)), blackout)
        longest = max(intersect(free, waiting), key=lambda x: x[1] - x[0], default=None)
        if longest is None or longest[1] - longest[0] <= bound:
            continue
        lo, hi = longest
        held = [w for w in waits if w[0] < hi and w[1] > lo]
        job = held[0][2] if held else None
        out.add("stalled", job,
                f"{worker} was alive and idle for {hi - lo:.2f} s ({rel(h, lo)} to "
                f"{rel(h, hi)}) while {len(held)} job(s) waited to run, with no fault active; "
                f"a worker must take waiting work within {bound:g} s",
                [w[3] for w in held[:5]])


def _busy_until(a: Attempt, mine: list[Attempt], life_end: float) -> float:
    """When attempt ``a`` stopped keeping its worker busy: its end, else (unknown) the
    worker's next attempt or the end of its life."""
    if a.ended is not None:
        return a.ended
    later = [b.at for b in mine if b.at > a.at]
    return min(later, default=life_end)


def _waiting(fx: Facts, policy: Policy, attempts: list[Attempt]
             ) -> list[tuple[float, float, int, int]]:
    """(from, to, job code, op that began the wait) of every wait of a job that was ready to
    run: from its dispatch to its first attempt, from the end of a retry's backoff to the next
    attempt. Jobs with a uniqueness key may wait for a lock: left out."""
    h = fx.h
    first_ok: dict[int, int] = {}
    unique: set[int] = set()
    idx, codes = fx.of(DISPATCH)
    for i, c in zip(idx, codes, strict=True):
        t = h.types[i]
        if t == "ok":
            first_ok.setdefault(c, i)
        elif t == "invoke" and isinstance(h.values[i], dict) and h.values[i].get("unique"):
            unique.add(c)
    runs: dict[int, list[Attempt]] = {}
    for a in attempts:
        runs.setdefault(a.code, []).append(a)
    out = []
    for c, i in first_ok.items():
        if c in unique or c not in runs:
            continue
        mine = sorted(runs[c], key=lambda a: a.at)
        if h.walls[i] < mine[0].at:
            out.append((h.walls[i], mine[0].at, c, i))
        for n in range(1, len(mine)):
            prev = mine[n - 1]
            if prev.status != "retrying" or prev.ended is None:
                continue  # unknown when (or whether) it was ready again
            ready = prev.ended + policy.backoff.delay(n)
            if ready < mine[n].at:
                out.append((ready, mine[n].at, c, prev.index))
    return out


def _attempts(fx: Facts) -> list[Attempt]:
    values = fx.h.values
    out = []
    for i, c in zip(*fx.attempt_ops, strict=True):
        v = values[i]
        if not isinstance(v.get("at"), int | float):
            continue
        out.append(Attempt(i, c, str(v.get("worker", "")), float(v["at"]), v.get("ended"),
                           v.get("status"), v.get("reason"), v.get("attempt"),
                           v.get("attempt_id")))
    return out
