"""Sets of jobs as *job maps*, and other C-speed helpers the checkers share.

Jobs are their dense codes (``History.codes``), so per-job facts are flat arrays indexed by
code, and a set of jobs is a job map: one byte per job (1: in the set), held in a Python
integer and combined with ``&``, ``|``, ``& ~`` at C speed.
"""

from __future__ import annotations

import contextlib
import gc
from array import array
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from itertools import compress, repeat
from operator import is_
from typing import Any

from harness.history import MISSING


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: checking allocates millions of acyclic containers,
    and the collections those allocations trigger would dominate the run."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def span(codes: Iterable[int]) -> range | None:
    """``codes`` as a range when they are consecutive increasing numbers (as when jobs are
    dispatched once each, in order), else None; the cheap test comes first."""
    if isinstance(codes, list | array) and codes and codes[-1] - codes[0] == len(codes) - 1:
        r = range(codes[0], codes[-1] + 1)
        if codes == (array(codes.typecode, r) if isinstance(codes, array) else list(r)):
            return r
    return None


def job_map(n: int, codes: Iterable[int], r: range | None = None) -> int:
    """The set of ``codes`` (all in ``range(n)``) as an integer: byte ``c`` is 1 for code c.
    ``r``: ``span(codes)``, when known."""
    r = span(codes) if r is None else r
    if r is not None and r.start >= 0 and r.stop <= n:
        return int.from_bytes(b"\1" * len(r), "little") << (8 * r.start)
    flags = bytearray(n)
    deque(map(flags.__setitem__, codes, repeat(1)), maxlen=0)
    return int.from_bytes(flags, "little")


def members(m: int, n: int) -> list[int]:
    """The codes in job map ``m``, in increasing order."""
    if not m:
        return []
    return list(compress(range(n), m.to_bytes(n, "little")))


def first_index(n: int, codes: Sequence[int], idx: Sequence[int], r: range | None = None
                ) -> array[int]:
    """code -> index of the code's first op among ``idx`` (-1: none). ``r``: ``span(codes)``,
    when known."""
    r = span(codes) if r is None else r
    if r is not None and r.start >= 0 and r.stop <= n:
        none = array("i", [-1])
        return none * r.start + array("i", idx) + none * (n - r.stop)
    out = array("i", [-1]) * n
    deque(map(out.__setitem__, reversed(codes), reversed(idx)), maxlen=0)
    return out


def last_index(n: int, codes: Iterable[int], idx: Iterable[int]) -> array[int]:
    """code -> index of the code's last op among ``idx`` (-1: none)."""
    out = array("i", [-1]) * n
    deque(map(out.__setitem__, codes, idx), maxlen=0)
    return out


def distinct(codes: Sequence[int], r: range | None = None) -> Sequence[int]:
    """``codes`` without repeats, in order of first appearance. ``r``: ``span(codes)``, when
    known."""
    if r is not None or span(codes) is not None:
        return codes
    return codes if len(set(codes)) == len(codes) else list(dict.fromkeys(codes))


def required(column: list[Any], key: str) -> list[Any]:
    """A field every value must have: ``value[key]`` raises where one has not."""
    if any(map(is_, column, repeat(MISSING))):
        raise KeyError(key)
    return column


def optional(column: list[Any]) -> list[Any]:
    """A field values may lack: ``value.get(key)`` (None where one has not)."""
    if any(map(is_, column, repeat(MISSING))):
        return [None if v is MISSING else v for v in column]
    return column
