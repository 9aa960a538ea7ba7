"""Recording a history as it happens: in memory, and to a JSONL file flushed line by line
(header first), so a crashed run still leaves its history."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

from harness.history._loader import HistoryError
from harness.history.encoding import as_loaded, header_line, line
from harness.history.model import History
from harness.history.ops import HEAL, INJECT, NEMESIS, OBSERVER, OP_TYPES, FaultPhase, Op, OpType
from harness.history.values import Observation


class Recorder:
    """Appends ops to a history: in memory, and to ``path`` as JSONL flushed line by line.

    Thread-safe. Also the recorder the faults API and the nemesis write to
    (:meth:`record_fault`).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 monotonic_ns: Callable[[], int] = time.monotonic_ns,
                 wall: Callable[[], float] = time.time) -> None:
        self.path = Path(path) if path is not None else None
        self._monotonic_ns = monotonic_ns
        self._wall = wall
        self._start = monotonic_ns()
        self.created = wall()  # Unix seconds at ``time`` 0: the header's ``created``
        self._lock = threading.Lock()
        self._cols: tuple[list[Any], ...] = ([], [], [], [], [], [], [])
        self._file: IO[str] | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("w", encoding="utf-8", newline="\n")
            self._file.write(header_line(self.created))
            self._file.flush()

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
        value = as_loaded(value)
        with self._lock:
            op = Op(len(self._cols[0]), type, process, f, value,
                    self._monotonic_ns() - self._start, self._wall())
            if self._file is not None:
                self._file.write(line(op.to_dict()))
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

    def record_fault(self, phase: FaultPhase, fault_id: str, target: str, kind: str,
                     params: Mapping[str, object]) -> None:
        """The faults recorder protocol: a ``nemesis`` ``info`` op ``inject`` or ``heal``,
        value ``{fault, target, kind, params}``. ``target``: what the fault strikes (a link
        name, a worker id, a job id, a server)."""
        if phase not in (INJECT, HEAL):
            raise HistoryError(f"fault phase {phase!r} is not 'inject' or 'heal'")
        self.append("info", NEMESIS, phase,
                    {"fault": fault_id, "target": target, "kind": kind, "params": dict(params)})

    def history(self) -> History:
        """A snapshot of everything recorded so far."""
        with self._lock:
            types, processes, fs, values, times, walls, jobs = (list(c) for c in self._cols)
            return History(types, processes, fs, values, times, walls, jobs,
                           created=self.created)
