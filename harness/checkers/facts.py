"""Per-job facts derived from a history in O(n), shared by every checker.

Built once per history (``History.derived``) and lazily by section. Jobs are their dense
codes, so per-job facts are flat arrays indexed by code and sets of jobs are job maps
(``harness.checkers.jobmaps``). The usual, valid case is decided by a few such operations;
loops over individual jobs run only where something is off.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import cached_property
from itertools import compress
from operator import eq, le, lt, not_, or_
from typing import Any

from harness.checkers.dispatch import DispatchFacts
from harness.checkers.jobmaps import job_map, last_index, members, optional, required
from harness.contract import OutcomeStatus
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


def facts(history: History) -> Facts:
    return history.derived("checker-facts", Facts)


class Facts:
    """Indexes of one history by job code. Read-only; sections are computed on first use."""

    def __init__(self, history: History) -> None:
        self.h = history
        self.ids = history.job_ids
        self.n = len(history.job_ids)

    def job(self, code: int) -> JobId:
        return self.ids[code]  # type: ignore[no-any-return]

    def of(self, f: str, *, need_job: bool = True) -> tuple[Sequence[int], array[int]]:
        """The indices of the ops of function ``f`` (a range when they are consecutive), and
        their job codes (-1: none; an op that must name a job and does not is an error,
        making the checker unknown). No Python object per op is kept."""
        key = f"of-{f}"
        if key not in self.__dict__:
            runs = self.h.runs(f)
            idx: Sequence[int]
            if len(runs) == 1:
                idx = range(*runs[0])
            else:
                idx = array("i")
                for start, stop in runs:
                    idx.extend(range(start, stop))
            self.__dict__[key] = idx
        return self.__dict__[key], self.codes(f, need_job=need_job)

    def codes(self, f: str, *, need_job: bool = True) -> array[int]:
        """The job codes of the ops of function ``f`` (see :meth:`of`)."""
        key = f"codes-{f}"
        if key not in self.__dict__:
            out, codes = array("i"), self.h.codes
            for start, stop in self.h.runs(f):
                out.extend(codes[start:stop])
            self.__dict__[key] = out, bool(out) and min(out) < 0
        out, some_none = self.__dict__[key]
        if need_job and some_none:
            i = self.of(f, need_job=False)[0][out.index(-1)]
            raise ValueError(f"op #{i} ({f}) names no job: {self.h.values[i]!r}")
        return out  # type: ignore[no-any-return]

    def map_of(self, codes: Sequence[int]) -> int:
        if min(codes, default=0) >= 0:
            return job_map(self.n, codes)
        return job_map(self.n, (c for c in codes if c >= 0))

    def members(self, m: int) -> list[int]:
        return members(m, self.n)

    # --- dispatch ---------------------------------------------------------------------------

    @cached_property
    def dispatch(self) -> DispatchFacts:
        return DispatchFacts(self.h, self.n, *self.of(DISPATCH))

    # --- outcomes ---------------------------------------------------------------------------

    @cached_property
    def outcome_ops(self) -> tuple[Sequence[int], array[int], list[str]]:
        """(indices, codes, statuses) of the outcome ops: one per outcome row, ``retrying``
        ones too (only ``completed`` and ``dead`` end a job)."""
        idx, codes = self.of(OUTCOME)
        return idx, codes, required(self.h.field(OUTCOME, "status"), "status")

    def _status(self, status: OutcomeStatus) -> tuple[Sequence[int], array[int]]:
        """(indices, codes) of the outcomes with this status."""
        key = f"status-{status}"
        if key not in self.__dict__:
            idx, codes, statuses = self.outcome_ops
            if statuses.count(status) == len(statuses):
                self.__dict__[key] = idx, codes
            else:
                sel = list(map(status.__eq__, statuses))
                self.__dict__[key] = (array("i", compress(idx, sel)),
                                      array("i", compress(codes, sel)))
        return self.__dict__[key]  # type: ignore[no-any-return]

    @cached_property
    def completed(self) -> array[int]:
        """code -> index of its last ``completed`` outcome (-1: none)."""
        idx, codes = self._status("completed")
        return last_index(self.n, codes, idx)

    @cached_property
    def completed_map(self) -> int:
        return job_map(self.n, self._status("completed")[1])

    @cached_property
    def n_completed(self) -> int:
        """How many jobs were reported completed."""
        return self.completed_map.bit_count()

    @cached_property
    def reported_dead(self) -> dict[int, int]:
        """code -> index of its last ``dead`` outcome (few, usually)."""
        idx, codes = self._status("dead")
        return dict(zip(codes, idx, strict=True))

    @cached_property
    def reported_dead_map(self) -> int:
        return job_map(self.n, self.reported_dead)

    @cached_property
    def retrying(self) -> tuple[Sequence[int], array[int]]:
        """(indices, codes) of the ``retrying`` outcomes: attempts that ended, the job going on."""
        return self._status("retrying")

    @cached_property
    def outcome_counts(self) -> Counter[int] | None:
        """Terminal outcomes per job code, or None when no job has more than one (the usual
        case)."""
        done, dead = self._status("completed")[1], self._status("dead")[1]
        if self.n_completed + len(self.reported_dead) == len(done) + len(dead) and not (
                self.completed_map & self.reported_dead_map):
            return None
        if len(done) + len(dead) == len(self.outcome_ops[0]):
            return Counter(self.outcome_ops[1])
        return Counter(done) + Counter(dead)

    def is_completed(self, c: int) -> bool:
        return self.completed[c] >= 0

    def outcome(self, c: int) -> int | None:
        """The index of job ``c``'s terminal outcome (completed first), or None."""
        i = self.completed[c]
        return i if i >= 0 else self.reported_dead.get(c)

    # --- effects ----------------------------------------------------------------------------

    @cached_property
    def effect_ops(self) -> tuple[array[int], list[Any], list[Any]]:
        """(codes, steps, kinds) of the effect ops."""
        codes = self.codes(EFFECT)
        h = self.h
        return (codes, required(h.field(EFFECT, "step"), "step"),
                required(h.field(EFFECT, "kind"), "kind"))

    @cached_property
    def effect_map(self) -> int:
        """Jobs with at least one effect."""
        return self.map_of(self.effect_ops[0])

    # --- attempts ---------------------------------------------------------------------------

    @cached_property
    def attempt_ops(self) -> tuple[Sequence[int], array[int]]:
        return self.of(ATTEMPT)

    @cached_property
    def attempt_counts(self) -> Counter[int]:
        """code -> number of attempts."""
        return Counter(self.attempt_ops[1])

    @cached_property
    def most_attempts(self) -> int:
        """The most attempts any job had."""
        return max(map(len, self.runs.values()), default=1 if self.attempt_ops[0] else 0)

    def n_attempts(self, c: int) -> int:
        """How many attempts job ``c`` had."""
        runs = self.runs.get(c)
        if runs is not None:
            return len(runs)
        if self.__dict__.get("attempts_ordered"):  # then codes are sorted
            codes = self.attempt_ops[1]
            k = bisect_left(codes, c)
            return int(k < len(codes) and codes[k] == c)
        return self.attempt_counts[c]

    @cached_property
    def attempt_map(self) -> int:
        return self.map_of(self.attempt_ops[1])

    @cached_property
    def runs(self) -> dict[int, list[tuple[Any, Any, Any, int]]]:
        """Jobs with more than one attempt -> (at, ended, status, index) of each, by start."""
        idx, codes = self.attempt_ops
        same = list(map(eq, codes, codes[1:]))  # attempts k and k + 1 are of one job
        # The usual case: attempts listed by job, so each job's attempts are together.
        ordered = self.__dict__["attempts_ordered"] = all(map(le, codes, codes[1:]))
        if ordered and not any(same):
            return {}
        n_jobs = len(codes) - sum(same) if ordered else len(set(codes))
        if n_jobs == len(codes):
            return {}
        if n_jobs == len(codes) - sum(same):  # each job's attempts are together: take them so
            fast = self._runs_together(idx, codes, same)
            if fast is not None:
                return fast
        values = self.h.values
        counts = self.attempt_counts
        retried: dict[int, list[int]] = {}
        for i, c in zip(idx, codes, strict=True):
            if counts[c] > 1:
                retried.setdefault(c, []).append(i)
        out = {}
        for c, attempts in retried.items():
            vals = [values[i] for i in attempts]
            out[c] = sorted(zip([v["at"] for v in vals], [v.get("ended") for v in vals],
                                [v.get("status") for v in vals], attempts, strict=True))
        return out

    def _runs_together(self, idx: Sequence[int], codes: array[int], same: list[bool]
                       ) -> dict[int, list[tuple[Any, Any, Any, int]]] | None:
        """:attr:`runs` when each job's attempts are consecutive ops and in order of start
        (None when they are not: the general way sorts them)."""
        h = self.h
        keep = list(map(or_, [False, *same], [*same, False]))  # attempts of retried jobs
        at = list(compress(h.field(ATTEMPT, "at"), keep))
        required(at, "at")
        kept = list(compress(codes, keep))
        pairs = list(map(eq, kept, kept[1:]))
        try:
            if not all(compress(map(lt, at, at[1:]), pairs)):
                return None
        except TypeError:
            return None
        rows = list(zip(at, optional(list(compress(h.field(ATTEMPT, "ended"), keep))),
                        optional(list(compress(h.field(ATTEMPT, "status"), keep))),
                        compress(idx, keep), strict=True))
        starts = [0, *compress(range(1, len(kept)), map(not_, pairs))]
        return {kept[a]: rows[a:b] for a, b in zip(starts, [*starts[1:], len(kept)],
                                                        strict=True)}

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
    def dead_lettered(self) -> dict[int, int]:
        """Dead-lettered job codes -> the probe's ``state`` op saying so."""
        values = self.h.values
        return {c: i for c, ids in self.states.items() for i in ids
                if values[i]["state"] == "dead"}

    @cached_property
    def dead_lettered_map(self) -> int:
        return job_map(self.n, self.dead_lettered)

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
        return self.completed_map | self.reported_dead_map | self.dead_lettered_map

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
