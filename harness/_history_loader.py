"""Loading JSONL histories fast: whole blocks of lines are parsed as one JSON array (one C
call instead of one per line) into columns, with the garbage collector paused while millions
of dicts are made. Used through :func:`harness.history.load`."""

from __future__ import annotations

import gc
import json
from array import array
from collections.abc import Iterator
from itertools import compress, repeat
from operator import is_
from typing import Any, Final

try:  # optional: about a quarter faster loading when installed
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None

BLOCK: Final = 1 << 18  # bytes parsed at a time: small enough that parsed ops stay in cache
_FIELDS: Final = ("type", "process", "f", "value", "time", "wall")


class HistoryError(ValueError):
    """A history file or op that does not follow the format."""


def read_columns(blocks: Iterator[bytes], source: str, op_types: frozenset[str],
                 dispatch: str) -> Columns:
    """Parse JSONL blocks (cut anywhere) into columns; ``op_types`` are the valid op types,
    ``dispatch`` the function whose invocations carry step lists."""
    cols = Columns(op_types, dispatch)
    rest = b""
    line = 1
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for block in blocks:
            block = rest + block if rest else block
            cut = block.rfind(b"\n") + 1
            rest = block[cut:]
            if cut:
                line = cols.add(block[:cut], line, source, maybe_cut=False)
        if rest.strip():
            before = len(cols.types)
            cols.add(rest, line, source, maybe_cut=True)
            cols.truncated = len(cols.types) == before
    finally:
        if was_enabled:
            gc.enable()
    return cols


class Columns:
    """Columns being loaded. Repeated strings (types, processes, functions, job ids) and equal
    step lists are stored once: less memory, and later passes touch fewer objects."""

    def __init__(self, op_types: frozenset[str], dispatch: str) -> None:
        self.op_types = op_types
        self.dispatch = dispatch
        self.truncated = False
        self.types: list[str] = []
        self.processes: list[str] = []
        self.fs: list[str] = []
        self.values: list[Any] = []
        self.times: list[int] = []
        self.walls: list[float] = []
        self.jobs: list[Any] = []
        self._names: dict[str, str] = {t: t for t in op_types}
        self.codes: array[int] = array("i")
        self.job_ids: list[Any] = []
        self._jobs: dict[Any, Any] = {None: None}
        self._codes: dict[Any, int] = {}
        self._steps: dict[Any, Any] = {}

    def add(self, text: bytes, line: int, source: str, maybe_cut: bool) -> int:
        """Parse complete lines ``text`` (numbered from ``line``); return the next line."""
        body = text[:-1] if text.endswith(b"\n") else text
        try:
            array = b"[" + body.replace(b"\n", b",") + b"]"
            objs = _orjson.loads(array) if _orjson is not None else json.loads(array)
            lines = None
        except ValueError:
            objs, lines = _parse_lines(body, line, source, maybe_cut)
        first = len(self.types)
        try:
            self._extend(objs, first)
        except (KeyError, TypeError, AttributeError, HistoryError) as e:
            _explain(objs, lines or list(range(line, line + len(objs))), first, source, e,
                     self.op_types)
        return line + body.count(b"\n") + 1

    def _extend(self, objs: list[Any], first: int) -> None:
        if [o["index"] for o in objs] != list(range(first, first + len(objs))):
            raise HistoryError("op indices are not consecutive from 0")
        names = self._names
        types = [o["type"] for o in objs]
        if not self.op_types.issuperset(types):
            raise HistoryError("unknown op type")
        self.types.extend(map(names.__getitem__, types))
        processes = [o["process"] for o in objs]
        self.processes.extend(map(names.setdefault, processes, processes))
        fs = [o["f"] for o in objs]
        self.fs.extend(map(names.setdefault, fs, fs))
        values = [o["value"] for o in objs]
        self.times.extend([o["time"] for o in objs])
        self.walls.extend([o["wall"] for o in objs])
        raw = [v.get("job") if v.__class__ is dict else None for v in values]
        jobs = list(map(self._jobs.setdefault, raw, raw))
        self.codes.extend(self._encode(jobs))
        for v, j, r in zip(values, jobs, raw, strict=True):
            if j is not r:  # share one string per job id
                v["job"] = j
        for k in compress(range(len(fs)), map(self.dispatch.__eq__, fs)):
            if types[k] == "invoke":
                self._share_steps(values[k])
        self.values.extend(values)
        self.jobs.extend(jobs)

    def _encode(self, jobs: list[Any]) -> list[int]:
        """Dense job numbers, in order of first appearance (-1: no job)."""
        codes: list[Any] = list(map(self._codes.get, jobs))
        for k in compress(range(len(codes)), map(is_, codes, repeat(None))):
            job = jobs[k]
            if job is None:
                codes[k] = -1
                continue
            code = self._codes.get(job)
            if code is None:
                code = self._codes[job] = len(self.job_ids)
                self.job_ids.append(job)
            codes[k] = code
        return codes

    def _share_steps(self, value: Any) -> None:
        # Jobs are built from a few step templates: equal step lists are stored once.
        steps = value.get("steps") if value.__class__ is dict else None
        if steps.__class__ is list:
            try:
                key = tuple(tuple(s.items()) if s.__class__ is dict else s for s in steps)
                value["steps"] = self._steps.setdefault(key, steps)
            except TypeError:  # an unhashable parameter: keep this list as it is
                pass


def _parse_lines(body: bytes, line: int, source: str, maybe_cut: bool
                 ) -> tuple[list[Any], list[int]]:
    objs: list[Any] = []
    numbers: list[int] = []
    for k, text in enumerate(body.split(b"\n")):
        if not text.strip():
            continue
        try:
            objs.append(json.loads(text))
            numbers.append(line + k)
        except ValueError as e:
            if maybe_cut:  # the unterminated last line of a crashed run
                return objs, numbers
            raise HistoryError(f"{source}:{line + k}: not a JSON op: {e}") from None
    return objs, numbers


def _explain(objs: list[Any], lines: list[int], first: int, source: str,
             error: Exception, op_types: frozenset[str]) -> None:
    for k, (o, n) in enumerate(zip(objs, lines, strict=True)):
        where = f"{source}:{n}"
        if not isinstance(o, dict) or not all(f in o for f in ("index", *_FIELDS)):
            raise HistoryError(f"{where}: an op needs index, {', '.join(_FIELDS)}") from None
        if o["index"] != first + k:
            raise HistoryError(f"{where}: index {o['index']}, expected {first + k}") from None
        if o["type"] not in op_types:
            raise HistoryError(f"{where}: type {o['type']!r} is not one of "
                               f"{sorted(op_types)}") from None
    raise HistoryError(f"{source}: {error}") from None
