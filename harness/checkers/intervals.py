"""Interval arithmetic over time (lists of disjoint, sorted ``(start, end)`` pairs), and
times told relative to a history's start: what the ``workers`` checker reasons with."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable

from harness.history import History

Interval = tuple[float, float]


def rel(h: History, t: float | None) -> str:
    """Unix time ``t`` as seconds since the history's first op (``+1.234s``)."""
    if t is None:
        return "?"
    return f"+{t - h.walls[0]:.3f}s" if h.walls else f"{t:.3f}"


def total(intervals: Iterable[Interval]) -> float:
    """The length of disjoint ``intervals``."""
    return sum(hi - lo for lo, hi in intervals)


def union(intervals: Iterable[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for lo, hi in sorted(intervals):
        if hi <= lo:
            continue
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def minus(a: list[Interval], b: list[Interval]) -> list[Interval]:
    """``a`` without ``b`` (both disjoint and sorted)."""
    out = []
    starts = [x[0] for x in b]
    for lo, hi in a:
        k = max(0, bisect_right(starts, lo) - 1)
        cur = lo
        while k < len(b) and b[k][0] < hi:
            blo, bhi = b[k]
            if bhi > cur:
                if blo > cur:
                    out.append((cur, blo))
                cur = max(cur, bhi)
            k += 1
        if cur < hi:
            out.append((cur, hi))
    return out


def intersect(a: list[Interval], b: list[Interval]) -> list[Interval]:
    out = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out
