"""The history: one append-only record of everything a scenario did and saw.

An op is Jepsen-shaped: a process *invokes* an operation ``f`` and later completes it with
``ok``, ``fail`` or ``info`` (outcome unknown). Faults write ``info`` ops from the ``nemesis``
process; after the drain the ``observer`` appends one ``ok`` op per observed fact (an effect
row, a reported outcome, an attempt, a queue state...). The vocabulary is defined here, as
constants and typed constructors, and in ``docs/history-and-checkers.md``.

On disk a history is JSONL, one op per line, written and flushed as it happens, so a crashed
run still leaves its history. In memory a :class:`History` is columnar (one list per field)
so that checkers can run tight loops over a million jobs' worth of ops; :class:`Op` objects
are made only when someone asks for one.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import chain, groupby
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Literal, TypeAlias, TypeVar, cast, overload

from harness import _history_loader as _loader
from harness._history_loader import MISSING as MISSING
from harness._history_loader import Columns, HistoryError, field_of, read_columns

JSON: TypeAlias = bool | int | float | str | list["JSON"] | dict[str, "JSON"] | None
JobId: TypeAlias = str | int
OpType: TypeAlias = Literal["invoke", "ok", "fail", "info"]
OP_TYPES: Final = frozenset({"invoke", "ok", "fail", "info"})

# Processes.
DISPATCHER: Final = "dispatcher"
NEMESIS: Final = "nemesis"
OBSERVER: Final = "observer"

# Functions (the ``f`` of an op).
DISPATCH: Final = "dispatch"  # dispatcher: invoke {job, steps, unique?} -> ok/fail/info {job}
INJECT: Final = "inject"  # nemesis, info: {fault, link, kind, params}
HEAL: Final = "heal"  # nemesis, info: {fault, link, kind, params}
DRAIN: Final = "drain"  # observer: invoke {deadline} -> ok {pending: 0} / info {pending: n}
EFFECT: Final = "effect"  # observer, ok: {job, step, kind, ref?, at?}
OUTCOME: Final = "outcome"  # observer, ok: {job, status, reason?, attempt?, worker?, at?}
ATTEMPT: Final = "attempt"  # observer, ok: {job, attempt?, worker?, at, ended?, result?}
PROBE: Final = "probe"  # observer, ok: {available, reason?}
STATE: Final = "state"  # observer, ok: {job, state, worker?, reason?, at?}
LOCK: Final = "lock"  # observer, ok: {key, job?, holder?, ttl, age?}

# The fields of values the checkers read, gathered by the loader (``History.field``).
FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    DISPATCH: ("steps",),
    EFFECT: ("step", "kind"),
    OUTCOME: ("status", "at"),
    ATTEMPT: ("at", "ended", "result"),
    STATE: ("state",),
}
_NAMED: Final = frozenset({"kind", "status", "result", "state"})  # fields holding names

EffectKind: TypeAlias = Literal["db_write", "email"]
OutcomeStatus: TypeAlias = Literal["completed", "failed"]
JobState: TypeAlias = Literal["queued", "scheduled", "leased", "dead"]
FaultPhase: TypeAlias = Literal["inject", "heal"]

_T = TypeVar("_T")


def worker(n: int) -> str:
    """The process name of worker ``n``: ``worker-2``."""
    return f"worker-{n}"


@dataclasses.dataclass(frozen=True, slots=True)
class Op:
    """One line of the history."""

    index: int
    type: OpType
    process: str
    f: str
    value: Any
    time: int  # monotonic nanoseconds since the recorder started
    wall: float  # Unix seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "type": self.type,
            "process": self.process,
            "f": self.f,
            "value": self.value,
            "time": self.time,
            "wall": self.wall,
        }

    def describe(self) -> str:
        """One line a person can read: ``#12 observer ok effect job=j-1 step=0 kind=db_write``."""
        return f"#{self.index} {self.process} {self.type} {self.f} {describe_value(self.value)}"


_SHOWN_KEYS: Final = (
    "job", "step", "kind", "status", "reason", "state", "attempt", "result", "at", "ended",
    "worker", "key", "holder", "ttl", "age", "fault", "link", "available", "pending",
    "deadline", "error",
)
_TIME_KEYS: Final = frozenset({"at", "ended"})


def describe_value(value: Any, width: int = 120, origin: float | None = None) -> str:
    """The fields of an op's value that matter to a reader, ``key=value`` separated by
    spaces. Times (``at``, ``ended``) are shown relative to ``origin`` when given."""
    if isinstance(value, dict):
        parts = []
        for k in _SHOWN_KEYS:
            if k in value:
                v = value[k]
                if k in _TIME_KEYS and origin is not None and isinstance(v, int | float):
                    parts.append(f"{k}=+{v - origin:.3f}s")
                else:
                    parts.append(f"{k}={_short(v)}")
        if "steps" in value:
            parts.append(f"steps={_steps_text(value['steps'])}")
        text = " ".join(parts) if parts else json.dumps(value, default=str)
    else:
        text = json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 3] + "..."


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".") if v == v else "nan"
    return v if isinstance(v, str) else json.dumps(v, default=str)


def _steps_text(steps: Any) -> str:
    if not isinstance(steps, list):
        return _short(steps)
    return ",".join(str(s.get("op", s.get("kind", "?"))) if isinstance(s, dict) else str(s)
                    for s in steps)


# --- values and observations --------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Observation:
    """What the observer saw: becomes an ``ok`` op of process ``observer`` when recorded."""

    f: str
    value: dict[str, JSON]


def _clean(**fields: JSON) -> dict[str, JSON]:
    return {k: v for k, v in fields.items() if v is not None}


def dispatch_value(job: JobId, steps: Sequence[Mapping[str, JSON]], unique: str | None = None
                   ) -> dict[str, JSON]:
    """The value of a ``dispatch`` invocation: the job id, its steps as in the envelope (each
    ``{"op": ..., ...}``, see docs/contract.md) and its uniqueness key."""
    return _clean(job=job, steps=[dict(s) for s in steps], unique=unique)


def effect(job: JobId, step: int, kind: EffectKind, *, ref: str | int | None = None,
           at: float | None = None) -> Observation:
    """One side effect of step ``step`` (0-based) of ``job``, observed by the harness;
    ``kind`` is the step's op."""
    return Observation(EFFECT, _clean(job=job, step=step, kind=kind, ref=ref, at=at))


def effect_row(job: JobId, step: int, *, ref: str | int | None = None, at: float | None = None
               ) -> Observation:
    """A ``db_write`` effect row (``ref`` = row id, ``at`` = when the row was written)."""
    return effect(job, step, "db_write", ref=ref, at=at)


def sink_message(job: JobId, step: int, *, ref: str | None = None, at: float | None = None
                 ) -> Observation:
    """A message received by the SMTP sink (``ref`` = Message-ID, ``at`` = received)."""
    return effect(job, step, "email", ref=ref, at=at)


def reported_outcome(job: JobId, status: OutcomeStatus, *, reason: str | None = None,
                     attempt: int | None = None, worker: str | None = None,
                     at: float | None = None) -> Observation:
    """A terminal outcome the worker reported (one per outcome row, not one per job)."""
    return Observation(OUTCOME, _clean(job=job, status=status, reason=reason, attempt=attempt,
                                       worker=worker, at=at))


def attempt_record(job: JobId, *, at: float, ended: float | None = None,
                   result: str | None = None, attempt: int | None = None,
                   worker: str | None = None) -> Observation:
    """One attempt to run ``job``: started ``at``; ``ended`` and ``result`` if it finished.

    ``result`` is ``ok`` or a failure (``exception``, ``timeout``, ``memory``, ``signal``,
    ``crash``, ``lease_lost``...); an attempt whose process died has neither.
    """
    return Observation(ATTEMPT, _clean(job=job, attempt=attempt, worker=worker, at=at,
                                       ended=ended, result=result))


def probe_status(available: bool, reason: str | None = None) -> Observation:
    """Marker: whether the worker's system could be probed for job states and locks."""
    return Observation(PROBE, _clean(available=available, reason=reason))


def job_state(job: JobId, state: JobState, *, worker: str | None = None,
              reason: str | None = None, at: float | None = None) -> Observation:
    """Where the probe found ``job``: queued, scheduled (retry), leased (by worker), dead."""
    return Observation(STATE, _clean(job=job, state=state, worker=worker, reason=reason, at=at))


def lock_held(key: str, *, ttl: float | None, job: JobId | None = None,
              holder: str | None = None, age: float | None = None) -> Observation:
    """A uniqueness or overlap lock still held; ``ttl`` = seconds left, None = never expires."""
    value = _clean(key=key, job=job, holder=holder, age=age)
    value["ttl"] = ttl
    return Observation(LOCK, value)


# --- the history ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class FaultSpan:
    """A fault from its inject op to its heal op (``heal`` None: never healed)."""

    fault: str
    kind: str
    link: str
    params: Any
    inject: int
    heal: int | None
    start: float
    end: float | None

    def label(self) -> str:
        where = f" on {self.link}" if self.link else ""
        return f"{self.kind}{where} [{self.fault}]"


class History(Sequence[Op]):
    """An immutable, columnar history. Index it for :class:`Op` objects; read the columns
    (``types``, ``processes``, ``fs``, ``values``, ``times``, ``walls``) for speed, never
    mutate them. Job ids are dictionary-encoded: ``jobs[i]`` is the ``job`` of op ``i``'s
    value (or None), ``codes[i]`` its dense number (or -1), and ``job_ids[code]`` the id."""

    __slots__ = ("_derived", "codes", "fs", "job_ids", "jobs", "processes", "times",
                 "truncated", "types", "values", "walls")

    def __init__(self, types: list[str], processes: list[str], fs: list[str],
                 values: list[Any], times: list[int], walls: list[float],
                 jobs: list[Any] | None = None, codes: array[int] | None = None,
                 job_ids: list[Any] | None = None, *, truncated: bool = False,
                 fields: Mapping[tuple[str, str], list[Any]] | None = None,
                 runs: dict[str, list[tuple[int, int]]] | None = None) -> None:
        n = len(types)
        if jobs is None:
            jobs = [v.get("job") if isinstance(v, dict) else None for v in values]
        if codes is None or job_ids is None:
            codes, job_ids = _encode(jobs)
        if not all(len(c) == n for c in (processes, fs, values, times, walls, jobs, codes)):
            raise HistoryError("history columns differ in length")
        self.types = types
        self.processes = processes
        self.fs = fs
        self.values = values
        self.times = times
        self.walls = walls
        self.jobs = jobs
        self.codes = codes
        self.job_ids = job_ids
        self.truncated = truncated  # the last line was cut (the run crashed mid-write)
        self._derived: dict[str, object] = {}
        for (f, key), col in (fields or {}).items():  # gathered by the loader
            self._derived[f"field:{f}:{key}"] = col
        if runs is not None:  # found by the loader
            self._derived["runs-by-f"] = runs

    @classmethod
    def from_ops(cls, ops: Iterable[Op | tuple[str, str, str, Any, int, float]]) -> History:
        """A history of these ops, re-indexed 0..n-1 in the given order. A tuple stands for
        ``(type, process, f, value, time, wall)``."""
        cols: tuple[list[Any], ...] = ([], [], [], [], [], [])
        for op in ops:
            row = (op.type, op.process, op.f, op.value, op.time, op.wall) if isinstance(
                op, Op) else op
            if row[0] not in OP_TYPES:
                raise HistoryError(f"op type {row[0]!r} is not one of {sorted(OP_TYPES)}")
            for col, field in zip(cols, row, strict=True):
                col.append(field)
        types, processes, fs, values, times, walls = cols
        return cls(types, processes, fs, values, times, walls)

    def __len__(self) -> int:
        return len(self.types)

    @overload
    def __getitem__(self, i: int) -> Op: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[Op]: ...
    def __getitem__(self, i: int | slice) -> Op | Sequence[Op]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        return Op(i, cast(OpType, self.types[i]), self.processes[i], self.fs[i], self.values[i],
                  self.times[i], self.walls[i])

    def __iter__(self) -> Iterator[Op]:
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"<History {len(self)} ops{' (truncated)' if self.truncated else ''}>"

    def derived(self, key: str, build: Callable[[History], _T]) -> _T:
        """A read-only index built once from this history and kept with it (checkers share
        theirs this way)."""
        try:
            return cast(_T, self._derived[key])
        except KeyError:
            value = self._derived[key] = build(self)
            return value

    def indices(self, f: str) -> list[int]:
        """Indices of the ops whose ``f`` is ``f``, in history order."""
        return self.derived(f"indices:{f}", lambda h: list(
            chain.from_iterable(range(start, stop) for start, stop in h.runs(f))))

    def runs(self, f: str) -> list[tuple[int, int]]:
        """The ops whose ``f`` is ``f`` as runs of consecutive indices ``(start, stop)``: a
        history is mostly long runs (the dispatches, then each kind of observation), so
        columns sliced by run are read at C speed."""
        return self.derived("runs-by-f", _runs_by_f).get(f, [])

    def column(self, column: Sequence[Any] | array[int], f: str) -> list[Any]:
        """The values of ``column`` (one of this history's columns) for the ops of ``f``."""
        out: list[Any] = []
        for start, stop in self.runs(f):
            part = column[start:stop]
            out.extend(part.tolist() if isinstance(part, array) else part)
        return out

    def field(self, f: str, key: str) -> list[Any]:
        """``value[key]`` of each op of ``f`` (aligned with :meth:`indices`), :data:`MISSING`
        where the value has no ``key`` or is not an object. The loader gathers the fields
        checkers read as it parses (``FIELDS``); others are gathered on first use."""
        return self.derived(f"field:{f}:{key}", lambda h: field_of(h.column(h.values, f), key))

    def ops(self, f: str | None = None, *, type: str | None = None,
            process: str | None = None) -> Iterator[Op]:
        """Ops matching every given filter, in order."""
        candidates: Iterable[int] = range(len(self)) if f is None else self.indices(f)
        for i in candidates:
            if (type is None or self.types[i] == type) and (
                    process is None or self.processes[i] == process):
                yield self[i]

    def of_job(self, job: JobId) -> list[Op]:
        """Every op whose value names ``job`` (a linear scan: for reports and tests)."""
        return [self[i] for i, j in enumerate(self.jobs) if j == job]

    def completion(self, i: int) -> Op | None:
        """The op completing invocation ``i``: the next op of the same process."""
        proc = self.processes[i]
        for j in range(i + 1, len(self)):
            if self.processes[j] == proc:
                return self[j] if self.types[j] != "invoke" else None
        return None

    def fault_spans(self) -> tuple[FaultSpan, ...]:
        """Faults, each from inject to heal (paired by fault id, first in first out)."""
        return self.derived("fault-spans", _fault_spans)

    def event_time(self, i: int) -> float:
        """When op ``i``'s fact happened: its value's ``at`` if it has one, else its wall time."""
        v = self.values[i]
        at = v.get("at") if isinstance(v, dict) else None
        return float(at) if isinstance(at, int | float) else self.walls[i]

    def faults_active(self, indices: Iterable[int]) -> list[FaultSpan]:
        """Faults active at any time between the earliest and latest event of these ops."""
        times = []
        for i in indices:
            if self.fs[i] in (INJECT, HEAL):
                continue
            times.append(self.event_time(i))
            ended = self.values[i].get("ended") if isinstance(self.values[i], dict) else None
            if isinstance(ended, int | float):
                times.append(float(ended))
        if not times:
            return []
        lo, hi = min(times), max(times)
        return [s for s in self.fault_spans() if s.start <= hi and (s.end is None or s.end >= lo)]

    def describe(self, i: int) -> str:
        """Op ``i`` as one line; its value's times relative to the history's first op."""
        origin = self.walls[0] if self.walls else None
        text = describe_value(self.values[i], origin=origin)
        return f"#{i} {self.processes[i]} {self.types[i]} {self.fs[i]} {text}"

    def dumps(self) -> str:
        """The history as JSONL text."""
        return "".join(_line(op.to_dict()) for op in self)

    def dump(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        path.write_text(self.dumps(), encoding="utf-8")
        return path


def _encode(jobs: list[Any]) -> tuple[array[int], list[Any]]:
    code_of: dict[Any, int] = {}
    try:
        codes = array("i", [-1 if j is None else code_of.setdefault(j, len(code_of))
                            for j in jobs])
    except TypeError as e:
        raise HistoryError(f"a job id must be a string or an integer: {e}") from None
    return codes, list(code_of)


def _runs_by_f(h: History) -> dict[str, list[tuple[int, int]]]:
    # Ops come in long runs of the same f, so grouping runs keeps this at C speed (the
    # loader finds them as it parses).
    runs: dict[str, list[tuple[int, int]]] = {}
    start = 0
    for f, run in groupby(h.fs):
        stop = start + len(list(run))
        runs.setdefault(f, []).append((start, stop))
        start = stop
    return runs


def _fault_spans(h: History) -> tuple[FaultSpan, ...]:
    spans: list[FaultSpan] = []
    open_: dict[str, list[int]] = {}
    for i in sorted(h.indices(INJECT) + h.indices(HEAL)):
        v = h.values[i] if isinstance(h.values[i], dict) else {}
        fault = str(v.get("fault", ""))
        if h.fs[i] == INJECT:
            spans.append(FaultSpan(fault, str(v.get("kind", "")), str(v.get("link", "")),
                                   v.get("params", {}), i, None, h.walls[i], None))
            open_.setdefault(fault, []).append(len(spans) - 1)
        elif open_.get(fault):
            k = open_[fault].pop(0)
            spans[k] = dataclasses.replace(spans[k], heal=i, end=h.walls[i])
    return tuple(spans)


# --- writing ---------------------------------------------------------------------------------


def _jsonable(o: object) -> JSON:
    if isinstance(o, enum.Enum):
        return cast(JSON, o.value)
    if isinstance(o, set | frozenset):
        return sorted((cast(JSON, x) for x in o), key=str)
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return cast(JSON, dataclasses.asdict(o))
    if isinstance(o, bytes):
        return o.decode("utf-8", "replace")
    return str(o)


def _line(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=_jsonable) + "\n"


class Recorder:
    """Appends ops to a history: in memory, and to ``path`` as JSONL flushed line by line.

    Thread-safe. Also the recorder the fault proxy's API writes to (:meth:`record_fault`).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 monotonic_ns: Callable[[], int] = time.monotonic_ns,
                 wall: Callable[[], float] = time.time) -> None:
        self.path = Path(path) if path is not None else None
        self._monotonic_ns = monotonic_ns
        self._wall = wall
        self._start = monotonic_ns()
        self._lock = threading.Lock()
        self._cols: tuple[list[Any], ...] = ([], [], [], [], [], [], [])
        self._file: IO[str] | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("w", encoding="utf-8", newline="\n")

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __len__(self) -> int:
        return len(self._cols[0])

    def append(self, type: OpType, process: str, f: str, value: Any = None) -> Op:
        """Record one op now and return it."""
        if type not in OP_TYPES:
            raise HistoryError(f"op type {type!r} is not one of {sorted(OP_TYPES)}")
        # Store what a loader would read back, so the in-memory history equals the file.
        value = json.loads(json.dumps(value, ensure_ascii=False, default=_jsonable))
        with self._lock:
            op = Op(len(self._cols[0]), type, process, f, value,
                    self._monotonic_ns() - self._start, self._wall())
            if self._file is not None:
                self._file.write(_line(op.to_dict()))
                self._file.flush()
            job = value.get("job") if isinstance(value, dict) else None
            for col, field in zip(self._cols, (type, process, f, value, op.time, op.wall, job),
                                  strict=True):
                col.append(field)
        return op

    def invoke(self, process: str, f: str, value: Any = None) -> Op:
        return self.append("invoke", process, f, value)

    def complete(self, invocation: Op, type: Literal["ok", "fail", "info"],
                 value: Any = None) -> Op:
        """Complete ``invocation``; ``value`` defaults to the invocation's value."""
        if invocation.type != "invoke":
            raise HistoryError(f"op #{invocation.index} is not an invocation")
        return self.append(type, invocation.process, invocation.f,
                           invocation.value if value is None else value)

    def ok(self, invocation: Op, value: Any = None) -> Op:
        return self.complete(invocation, "ok", value)

    def fail(self, invocation: Op, value: Any = None) -> Op:
        return self.complete(invocation, "fail", value)

    def info(self, invocation: Op, value: Any = None) -> Op:
        return self.complete(invocation, "info", value)

    def observe(self, *observations: Observation) -> list[Op]:
        """Append observations as ``ok`` ops of the ``observer`` process."""
        return [self.append("ok", OBSERVER, o.f, o.value) for o in observations]

    def record_fault(self, phase: FaultPhase, fault_id: str, link: str, kind: str,
                     params: Mapping[str, object]) -> None:
        """The faults recorder protocol: a ``nemesis`` ``info`` op ``inject`` or ``heal``."""
        if phase not in (INJECT, HEAL):
            raise HistoryError(f"fault phase {phase!r} is not 'inject' or 'heal'")
        self.append("info", NEMESIS, phase,
                    {"fault": fault_id, "link": link, "kind": kind, "params": dict(params)})

    def history(self) -> History:
        """A snapshot of everything recorded so far."""
        with self._lock:
            types, processes, fs, values, times, walls, jobs = (list(c) for c in self._cols)
            return History(types, processes, fs, values, times, walls, jobs)


# --- loading ---------------------------------------------------------------------------------


def load(path: str | os.PathLike[str]) -> History:
    """Load a JSONL history. A cut-off last line (a crashed run) is dropped and the history
    marked ``truncated``; any other bad line is a :class:`HistoryError` naming the line."""
    with open(path, "rb") as fh:
        return _from_columns(read_columns(iter(lambda: fh.read(_loader.BLOCK), b""), str(path),
                                          OP_TYPES, DISPATCH, FIELDS, _NAMED))


def loads(data: bytes | str, *, source: str = "<history>") -> History:
    """Parse JSONL history text (see :func:`load`)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return _from_columns(read_columns(iter([raw]), source, OP_TYPES, DISPATCH, FIELDS, _NAMED))


def _from_columns(cols: Columns) -> History:
    return History(cols.types, cols.processes, cols.fs, cols.values, cols.times, cols.walls,
                   cols.jobs, cols.codes, cols.job_ids, truncated=cols.truncated,
                   fields=cols.fields, runs=cols.runs)
