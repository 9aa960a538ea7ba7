"""The in-memory history: columnar (one list per field) so that checkers can run tight
loops over a million jobs' worth of ops; :class:`Op` objects are made only when someone asks
for one. Queries that checkers and reports share live here too."""

from __future__ import annotations

import dataclasses
import os
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import chain, groupby
from pathlib import Path
from typing import Any, TypeVar, cast, overload

from harness.history._loader import HistoryError, field_of
from harness.history.encoding import header_line, line
from harness.history.ops import HEAL, INJECT, OP_TYPES, JobId, Op, OpType, describe_value

_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True, slots=True)
class FaultSpan:
    """A fault from its inject op to its heal op (``heal`` None: never healed). ``target``
    is what it struck: a link (``redis``), a worker (``worker-2``), a job or a server."""

    fault: str
    kind: str
    target: str
    params: Any
    inject: int
    heal: int | None
    start: float
    end: float | None

    def label(self) -> str:
        """``kill on worker-2 [kill-1]``."""
        where = f" on {self.target}" if self.target else ""
        return f"{self.kind}{where} [{self.fault}]"

    @property
    def inflight(self) -> tuple[dict[str, Any], ...]:
        """The attempts running when the fault struck, ``{job, attempt, attempt_id, worker}``
        each, as the nemesis recorded them in ``params.inflight`` (empty when it did not)."""
        found = self.params.get("inflight") if isinstance(self.params, dict) else None
        if not isinstance(found, list):
            return ()
        return tuple(a for a in found if isinstance(a, dict))


class History(Sequence[Op]):
    """An immutable, columnar history. Index it for :class:`Op` objects; read the columns
    (``types``, ``processes``, ``fs``, ``values``, ``times``, ``walls``) for speed, never
    mutate them. Job ids are dictionary-encoded: ``jobs[i]`` is the ``job`` of op ``i``'s
    value (or None), ``codes[i]`` its dense number (or -1), and ``job_ids[code]`` the id."""

    __slots__ = ("_derived", "codes", "created", "fs", "job_ids", "jobs", "processes",
                 "times", "truncated", "types", "values", "walls")

    def __init__(self, types: list[str], processes: list[str], fs: list[str],
                 values: list[Any], times: list[int], walls: list[float],
                 jobs: list[Any] | None = None, codes: array[int] | None = None,
                 job_ids: list[Any] | None = None, *, truncated: bool = False,
                 fields: Mapping[tuple[str, str], list[Any]] | None = None,
                 runs: dict[str, list[tuple[int, int]]] | None = None,
                 created: float | None = None) -> None:
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
        # The header's ``created``: Unix seconds at which ``times`` are 0 (None: not known).
        self.created = created
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

    def faults_active(self, indices: Iterable[int], *, job: JobId | None = None
                      ) -> list[FaultSpan]:
        """Faults active at any time between the earliest and latest event of these ops;
        with ``job``, those aimed at another job of the history (a redispatch of it) are left
        out: they are not what happened to this one."""
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
        others = set() if job is None else {str(j) for j in self.job_ids} - {str(job)}
        return [s for s in self.fault_spans() if s.start <= hi and (s.end is None or s.end >= lo)
                and s.target not in others]

    def describe(self, i: int) -> str:
        """Op ``i`` as one line; its value's times relative to the history's first op."""
        origin = self.walls[0] if self.walls else None
        text = describe_value(self.values[i], origin=origin)
        return f"#{i} {self.processes[i]} {self.types[i]} {self.fs[i]} {text}"

    def dumps(self) -> str:
        """The history as JSONL text, header first. Without a known ``created`` time, the
        header's is estimated from the first op."""
        created = self.created
        if created is None:
            created = self.walls[0] - self.times[0] / 1e9 if self.walls else 0.0
        return header_line(created) + "".join(line(op.to_dict()) for op in self)

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
            spans.append(FaultSpan(fault, str(v.get("kind", "")), str(v.get("target", "")),
                                   v.get("params", {}), i, None, h.walls[i], None))
            open_.setdefault(fault, []).append(len(spans) - 1)
        elif open_.get(fault):
            k = open_[fault].pop(0)
            spans[k] = dataclasses.replace(spans[k], heal=i, end=h.walls[i])
    return tuple(spans)
