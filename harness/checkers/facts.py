"""Per-job facts derived from a history in O(n), shared by every checker.

Built once per history (``History.derived``) and lazily by section. Jobs are their dense
codes (``History.codes``), so per-job facts are flat arrays indexed by code, and sets of jobs
are *job maps*: one byte per job (1: in the set), combined as Python integers (``&``, ``|``,
``& ~``) at C speed. The usual, valid case is decided by a few such operations; loops over
individual jobs run only where something is off.
"""

from __future__ import annotations

import contextlib
import gc
from array import array
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from functools import cached_property
from itertools import compress, repeat
from typing import Any

from harness.history import (
    ATTEMPT,
    DISPATCH,
    DRAIN,
    EFFECT,
    LOCK,
    OUTCOME,
    PROBE,
    STATE,
    History,
    JobId,
)


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


def facts(history: History) -> Facts:
    return history.derived("checker-facts", Facts)


# --- job maps: one byte per job code ----------------------------------------------------------


def job_map(n: int, codes: Iterable[int]) -> int:
    """The set of ``codes`` (all in ``range(n)``) as an integer: byte ``c`` is 1 for code c."""
    flags = bytearray(n)
    deque(map(flags.__setitem__, codes, repeat(1)), maxlen=0)
    return int.from_bytes(flags, "little")


def members(m: int, n: int) -> list[int]:
    """The codes in job map ``m``, in increasing order."""
    if not m:
        return []
    return list(compress(range(n), m.to_bytes(n, "little")))


def first_index(n: int, codes: list[int], idx: list[int]) -> array[int]:
    """code -> index of the code's first op among ``idx`` (-1: none)."""
    out = array("i", [-1]) * n
    deque(map(out.__setitem__, reversed(codes), reversed(idx)), maxlen=0)
    return out


def last_index(n: int, codes: list[int], idx: list[int]) -> array[int]:
    """code -> index of the code's last op among ``idx`` (-1: none)."""
    out = array("i", [-1]) * n
    deque(map(out.__setitem__, codes, idx), maxlen=0)
    return out


def distinct(codes: list[int]) -> list[int]:
    """``codes`` without repeats, in order of first appearance."""
    return codes if len(set(codes)) == len(codes) else list(dict.fromkeys(codes))


class Facts:
    """Indexes of one history by job code. Read-only; sections are computed on first use."""

    def __init__(self, history: History) -> None:
        self.h = history
        self.ids = history.job_ids
        self.n = len(history.job_ids)

    def job(self, code: int) -> JobId:
        return self.ids[code]  # type: ignore[no-any-return]

    def of(self, f: str, *, need_job: bool = True) -> tuple[list[int], list[int]]:
        """The indices of the ops of function ``f``, and their job codes (-1: none; an op
        that must name a job and does not is an error, making the checker unknown)."""
        idx = self.h.indices(f)
        out: list[int] = self.h.column(self.h.codes, f)
        if need_job and -1 in out:
            i = idx[out.index(-1)]
            raise ValueError(f"op #{i} ({f}) names no job: {self.h.values[i]!r}")
        return idx, out

    def map_of(self, codes: Iterable[int]) -> int:
        return job_map(self.n, (c for c in codes if c >= 0))

    def members(self, m: int) -> list[int]:
        return members(m, self.n)

    # --- dispatch ---------------------------------------------------------------------------

    @cached_property
    def dispatch(self) -> DispatchFacts:
        return DispatchFacts(self)

    # --- outcomes ---------------------------------------------------------------------------

    @cached_property
    def outcome_ops(self) -> tuple[list[int], list[int], list[str]]:
        """(indices, codes, statuses) of the outcome ops."""
        idx, codes = self.of(OUTCOME)
        values = self.h.values
        return idx, codes, [values[i]["status"] for i in idx]

    def _status(self, status: str) -> tuple[list[int], list[int]]:
        """(indices, codes) of the outcomes with this status."""
        key = f"status-{status}"
        if key not in self.__dict__:
            idx, codes, statuses = self.outcome_ops
            sel = list(map(status.__eq__, statuses))
            self.__dict__[key] = list(compress(idx, sel)), list(compress(codes, sel))
        return self.__dict__[key]  # type: ignore[no-any-return]

    @cached_property
    def completed(self) -> array[int]:
        """code -> index of its last ``completed`` outcome (-1: none)."""
        idx, codes = self._status("completed")
        return last_index(self.n, codes, idx)

    @cached_property
    def completed_codes(self) -> list[int]:
        return distinct(self._status("completed")[1])

    @cached_property
    def completed_map(self) -> int:
        return job_map(self.n, self.completed_codes)

    @cached_property
    def failed(self) -> dict[int, int]:
        """code -> index of its last ``failed`` outcome (few, usually)."""
        idx, codes = self._status("failed")
        return dict(zip(codes, idx, strict=True))

    @cached_property
    def failed_map(self) -> int:
        return job_map(self.n, self.failed)

    @cached_property
    def outcome_counts(self) -> Counter[int] | None:
        """Outcomes per job code, or None when no job has more than one (the usual case)."""
        n_ops = len(self.outcome_ops[0])
        if len(self.completed_codes) + len(self.failed) == n_ops and not (
                self.completed_map & self.failed_map):
            return None
        return Counter(self.outcome_ops[1])

    def is_completed(self, c: int) -> bool:
        return self.completed[c] >= 0

    def outcome(self, c: int) -> int | None:
        """The index of job ``c``'s terminal outcome (completed first), or None."""
        i = self.completed[c]
        return i if i >= 0 else self.failed.get(c)

    # --- effects ----------------------------------------------------------------------------

    @cached_property
    def effect_ops(self) -> tuple[list[int], list[int], list[Any], list[Any]]:
        """(indices, codes, steps, kinds) of the effect ops."""
        idx, codes = self.of(EFFECT)
        values = self.h.values
        vals = [values[i] for i in idx]
        return idx, codes, [v["step"] for v in vals], [v["kind"] for v in vals]

    @cached_property
    def effect_map(self) -> int:
        """Jobs with at least one effect."""
        return self.map_of(self.effect_ops[1])

    # --- attempts ---------------------------------------------------------------------------

    @cached_property
    def attempt_ops(self) -> tuple[list[int], list[int]]:
        return self.of(ATTEMPT)

    @cached_property
    def attempt_counts(self) -> array[int]:
        """code -> number of attempts."""
        counts = array("i", [0]) * self.n
        for c in self.attempt_ops[1]:
            if c >= 0:
                counts[c] += 1
        return counts

    @cached_property
    def attempt_map(self) -> int:
        return self.map_of(self.attempt_ops[1])

    @cached_property
    def retried(self) -> dict[int, list[int]]:
        """Job codes with more than one attempt -> their attempt op indices, in order."""
        idx, codes = self.attempt_ops
        if len(set(codes)) == len(codes):
            return {}
        counts = self.attempt_counts
        out: dict[int, list[int]] = {}
        for i, c in zip(idx, codes, strict=True):
            if c >= 0 and counts[c] > 1:
                out.setdefault(c, []).append(i)
        return out

    @cached_property
    def runs(self) -> dict[int, list[tuple[float, float | None, str | None, int]]]:
        """Jobs with more than one attempt -> (at, ended, result, index) of each, by start."""
        values = self.h.values
        out = {}
        for c, attempts in self.retried.items():
            vals = [values[i] for i in attempts]
            out[c] = sorted(zip([v["at"] for v in vals], [v.get("ended") for v in vals],
                                [v.get("result") for v in vals], attempts, strict=True))
        return out

    # --- probe ------------------------------------------------------------------------------

    @cached_property
    def probe(self) -> tuple[bool, list[int], str]:
        """(available, marker op indices, reason when unavailable)."""
        idx = self.h.indices(PROBE)
        if not idx:
            return False, [], "no probe observation in the history"
        last = self.h.values[idx[-1]]
        reason = str(last.get("reason") or "the probe reported it was unavailable")
        return bool(last.get("available")), idx, reason

    @cached_property
    def states(self) -> dict[int, list[int]]:
        """code -> indices of the probe's ``state`` ops for it."""
        return self._by_code(STATE)

    @cached_property
    def dead(self) -> dict[int, int]:
        """Dead-lettered job codes -> the state op saying so."""
        values = self.h.values
        return {c: i for c, ids in self.states.items() for i in ids
                if values[i]["state"] == "dead"}

    @cached_property
    def dead_map(self) -> int:
        return job_map(self.n, self.dead)

    @cached_property
    def live(self) -> dict[int, list[int]]:
        """Job codes the probe found queued, scheduled or leased, or locking -> those ops."""
        values = self.h.values
        out: dict[int, list[int]] = {}
        for c, ids in self.states.items():
            found = [i for i in ids if values[i]["state"] != "dead"]
            if found:
                out[c] = found
        for c, ids in self.locks.items():
            out.setdefault(c, []).extend(ids)
        return out

    @cached_property
    def locks(self) -> dict[int, list[int]]:
        """Job codes named by a held lock -> the lock ops."""
        return self._by_code(LOCK, need_job=False)

    def _by_code(self, f: str, need_job: bool = True) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for i, c in zip(*self.of(f, need_job=need_job), strict=True):
            if c >= 0:
                out.setdefault(c, []).append(i)
        return out

    @cached_property
    def drain_end(self) -> list[int]:
        """Completions of the drain (``ok``: everything terminal; ``info``: deadline passed)."""
        return [i for i in self.h.indices(DRAIN) if self.h.types[i] != "invoke"]

    @cached_property
    def terminal_map(self) -> int:
        return self.completed_map | self.failed_map | self.dead_map

    def job_ops(self, f: str, codes: Iterable[int], limit: int = 20) -> dict[int, list[int]]:
        """For each of ``codes``: the indices of its ops of function ``f`` (at most ``limit``).
        One pass over that function's ops: for gathering evidence, not for hot paths."""
        out: dict[int, list[int]] = {c: [] for c in codes}
        if out:
            for i, c in zip(*self.of(f, need_job=False), strict=True):
                ids = out.get(c)
                if ids is not None and len(ids) < limit:
                    ids.append(i)
        return out


class DispatchFacts:
    """Who was dispatched, and how each dispatch ended."""

    def __init__(self, fx: Facts) -> None:
        h, n = fx.h, fx.n
        self.fx = fx
        idx, codes = fx.of(DISPATCH)
        kinds = h.column(h.types, DISPATCH)
        by_type: dict[str, tuple[list[int], list[int]]] = {}
        for t in ("invoke", "ok", "fail", "info"):
            if t in ("fail", "info") and len(by_type["invoke"][0]) + len(by_type["ok"][0]) == len(
                    idx):
                by_type[t] = [], []  # the usual case: only invocations and acknowledgements
                continue
            sel = list(map(t.__eq__, kinds))
            by_type[t] = list(compress(idx, sel)), list(compress(codes, sel))
        inv, inv_codes = by_type["invoke"]
        self.n_invokes = len(inv)
        self.first_invoke = first_index(n, inv_codes, inv)
        self.invoked = distinct(inv_codes)  # codes, in order of first dispatch
        self.invoked_map = job_map(n, self.invoked)
        oks, ok_codes = by_type["ok"]
        self._oks, self._ok_codes = oks, ok_codes
        self._fail_codes = by_type["fail"][1]
        # The usual case: each invocation acknowledged, in order, each job once.
        self.all_acked = ok_codes == inv_codes and len(self.invoked) == len(inv_codes)
        self.acked = self.invoked if self.all_acked else distinct(ok_codes)
        self.acked_map = self.invoked_map if self.all_acked else job_map(n, self.acked)
        self.info = dict(zip(reversed(by_type["info"][1]), reversed(by_type["info"][0]),
                             strict=True))
        self.fail = dict(zip(reversed(by_type["fail"][1]), reversed(by_type["fail"][0]),
                             strict=True))
        self.failed: dict[int, int] = {}  # every dispatch failed: definitely not enqueued
        self.indeterminate: dict[int, int] = {}  # code -> its info (or unanswered invoke)
        if not (self.all_acked and not self.fail and not self.info):
            self._classify(inv_codes)
        self.failed_map = job_map(n, self.failed)

    def _classify(self, inv_codes: list[int]) -> None:
        acked = self.acked_map.to_bytes(self.fx.n, "little")
        if self.fail:
            invokes = Counter(inv_codes)
            fails = Counter(self._fail_codes)
            self.failed = {c: i for c, i in self.fail.items()
                           if not acked[c] and fails[c] == invokes[c]}
        self.indeterminate = {c: self.info.get(c, self.first_invoke[c]) for c in self.invoked
                              if not acked[c] and c not in self.failed}

    @cached_property
    def ok_index(self) -> dict[int, int]:
        return dict(zip(reversed(self._ok_codes), reversed(self._oks), strict=True))

    def evidence(self, c: int) -> list[int]:
        """The dispatch ops of job ``c``: its first invocation and how it ended."""
        out = [self.first_invoke[c]] if self.first_invoke[c] >= 0 else []
        for d in (self.ok_index, self.info, self.fail):
            if c in d:
                out.append(d[c])
        return out

    def steps(self, c: int) -> Any:
        i = self.first_invoke[c]
        return self.fx.h.values[i].get("steps") if i >= 0 else None
