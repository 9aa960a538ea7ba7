"""Loading JSONL histories fast: whole blocks of lines are parsed as one JSON array (one C
call instead of one per line) into columns, with the garbage collector paused while millions
of dicts are made. Used through :func:`harness.history.load`; the lowest layer of the
package (it imports nothing of it)."""

from __future__ import annotations

import contextlib
import gc
import json
from array import array
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from itertools import chain, compress, groupby, repeat
from operator import is_, is_not
from typing import Any, Final

try:  # a dependency: parses about twice as fast as the standard library
    import orjson

    _parse: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    _parse = json.loads

BLOCK: Final = 1 << 18  # bytes parsed at a time: small enough that parsed ops stay in cache
_FIELDS: Final = ("type", "process", "f", "value", "time", "wall")


class HistoryError(ValueError):
    """A history file or op that does not follow the format."""


class _Missing:
    """The value of a field an op's value does not have (see ``History.field``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Final[Any] = _Missing()


def field_of(values: list[Any], key: str) -> list[Any]:
    """``value[key]`` of each value (:data:`MISSING` where it has none, or is no object)."""
    try:
        return list(map(dict.get, values, repeat(key), repeat(MISSING)))
    except TypeError:  # a value that is not an object
        return [v.get(key, MISSING) if isinstance(v, dict) else MISSING for v in values]


def read_columns(blocks: Iterator[bytes], source: str, op_types: frozenset[str],
                 dispatch: str, extract: Mapping[str, tuple[str, ...]],
                 names: frozenset[str] = frozenset(),
                 header: Callable[[bytes, str], dict[str, Any]] | None = None) -> Columns:
    """Parse JSONL blocks (cut anywhere) into columns; ``op_types`` are the valid op types,
    ``dispatch`` the function whose invocations carry step lists, ``extract`` the fields
    of values to gather per function (``Columns.fields``), of which those in ``names`` hold
    names (stored once each). ``header`` reads the first line (``Columns.header``), given
    its text and ``file:line``, before any op is parsed."""
    cols = Columns(op_types, dispatch, extract, names)
    rest = b""
    line = 1
    if header is not None:
        text, rest, line = _first_line(blocks)
        cols.header = header(text, f"{source}:{line}")
        line += 1
        blocks = chain([rest], blocks)
        rest = b""
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
        if was_enabled:
            # The collector's pass over the new objects, done here once (it is the cost of
            # making them), not at whatever allocation comes next: the objects move to the
            # oldest generation, and later young collections skip them.
            gc.collect(1)
    finally:
        if was_enabled:
            gc.enable()
    return cols


def _first_line(blocks: Iterator[bytes]) -> tuple[bytes, bytes, int]:
    """The first non-blank line, the text after it, and its line number (1-based)."""
    buf = b""
    line = 1
    for block in blocks:
        buf += block
        while (nl := buf.find(b"\n")) >= 0:
            if buf[:nl].strip():
                return buf[:nl], buf[nl + 1:], line
            buf = buf[nl + 1:]
            line += 1
    return buf, b"", line


class Columns:
    """Columns being loaded. Repeated strings (types, processes, functions, job ids) and equal
    step lists are stored once: less memory, and later passes touch fewer objects. The fields
    checkers read are gathered while each block's values are fresh in the cache:
    ``fields[(f, key)]`` is ``field_of(values of f's ops, key)``."""

    def __init__(self, op_types: frozenset[str], dispatch: str,
                 extract: Mapping[str, tuple[str, ...]], names: frozenset[str] = frozenset()
                 ) -> None:
        self.op_types = op_types
        self.dispatch = dispatch
        self.extract = extract
        self.named = names
        self.runs: dict[str, list[tuple[int, int]]] = {}  # f -> runs of its ops (start, stop)
        self.fields: dict[tuple[str, str], list[Any]] = {
            (f, k): [] for f, keys in extract.items() for k in keys}
        self.truncated = False
        self.header: dict[str, Any] | None = None
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
            objs = _parse(array)
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
        fs = list(map(names.setdefault, fs, fs))
        values = [o["value"] for o in objs]
        self.times.extend([o["time"] for o in objs])
        self.walls.extend([o["wall"] for o in objs])
        raw = [v.get("job") if v.__class__ is dict else None for v in values]
        jobs = list(map(self._jobs.setdefault, raw, raw))
        codes = self._encode(jobs)
        # Share one string per job id.
        other = list(map(is_not, jobs, raw))
        deque(map(dict.__setitem__, compress(values, other), repeat("job"),
                  compress(jobs, other)), maxlen=0)
        start = 0
        for f, run in groupby(fs):  # long runs of one function
            stop = start + len(list(run))
            runs = self.runs.setdefault(f, [])
            if runs and runs[-1][1] == first + start:
                runs[-1] = (runs[-1][0], first + stop)
            else:
                runs.append((first + start, first + stop))
            keys = self.extract.get(f)
            if f == self.dispatch:
                self._share_steps(values[start:stop], types[start:stop])
            if keys:
                part = values[start:stop]
                for k in keys:
                    got = field_of(part, k)
                    if k in self.named:
                        with contextlib.suppress(TypeError):  # unhashable: keep them as they are
                            got = list(map(names.setdefault, got, got))
                    self.fields[(f, k)].extend(got)
            start = stop
        self.fs.extend(fs)
        self.codes.extend(codes)
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

    def _share_steps(self, values: list[Any], types: list[str]) -> None:
        # Jobs are built from a few step templates: equal step lists are stored once.
        steps = field_of(values, "steps")
        known = self._steps
        for k in compress(range(len(steps)), map(is_, map(type, steps), repeat(list))):
            if types[k] != "invoke":
                continue
            s = steps[k]
            try:
                try:
                    key: Any = tuple(map(tuple, map(dict.items, s)))
                except TypeError:  # a step that is not an object
                    key = tuple(tuple(x.items()) if x.__class__ is dict else x for x in s)
                shared = known.setdefault(key, s)
            except TypeError:  # an unhashable parameter: keep this list as it is
                continue
            if shared is not s:
                values[k]["steps"] = shared


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
