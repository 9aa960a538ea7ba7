"""Who was dispatched, and how each dispatch ended: the dispatch section of the facts."""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Sequence
from functools import cached_property
from itertools import compress
from typing import Any

from harness.checkers.jobmaps import distinct, first_index, job_map, optional, span
from harness.history import DISPATCH, History


class DispatchFacts:
    """Who was dispatched, and how each dispatch ended. ``idx`` and ``codes``: the indices
    and job codes of the dispatch ops; ``n``: how many job codes the history has."""

    def __init__(self, h: History, n: int, idx: Sequence[int], codes: array[int]) -> None:
        self.h, self.n = h, n
        kinds = h.column(h.types, DISPATCH)
        steps = h.field(DISPATCH, "steps")
        by_type: dict[str, tuple[Sequence[int], Sequence[int]]] = {}
        if len(kinds) % 2 == 0 and kinds == ["invoke", "ok"] * (len(kinds) // 2):
            # The usual case: each invocation acknowledged at once.
            by_type = {"invoke": (idx[0::2], codes[0::2]), "ok": (idx[1::2], codes[1::2]),
                       "fail": ([], []), "info": ([], [])}
            self._steps = steps[0::2]
        for t in ("invoke", "ok", "fail", "info"):
            if t in by_type:
                continue
            if t in ("fail", "info") and len(by_type["invoke"][0]) + len(by_type["ok"][0]) == len(
                    idx):
                by_type[t] = [], []  # the usual case: only invocations and acknowledgements
                continue
            sel = list(map(t.__eq__, kinds))
            by_type[t] = list(compress(idx, sel)), list(compress(codes, sel))
            if t == "invoke":
                self._steps = list(compress(steps, sel))
        inv, inv_codes = by_type["invoke"]
        self._inv_codes = inv_codes
        self.n_invokes = len(inv)
        r = span(inv_codes)  # the usual case: range(number of jobs)
        self.first_invoke = first_index(n, inv_codes, inv, r)
        self.invoked = distinct(inv_codes, r)  # codes, in order of first dispatch
        self.invoked_span = r if r is not None else span(self.invoked)
        self.invoked_map = job_map(n, self.invoked, self.invoked_span)
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

    def _classify(self, inv_codes: Sequence[int]) -> None:
        acked = self.acked_map.to_bytes(self.n, "little")
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

    def expected(self) -> tuple[Sequence[int], list[Any]]:
        """The jobs dispatched and not failed (in order of first dispatch), and the steps
        of each one's first dispatch (None: no steps)."""
        if len(self.invoked) == len(self._inv_codes):  # each job dispatched once
            jobs, steps = self.invoked, self._steps
        else:
            first = dict(zip(reversed(self._inv_codes), reversed(self._steps), strict=True))
            jobs = self.invoked
            steps = [first[c] for c in jobs]
        if self.failed:
            keep = [c not in self.failed for c in jobs]
            jobs, steps = list(compress(jobs, keep)), list(compress(steps, keep))
        return jobs, optional(steps)

    def steps(self, c: int) -> Any:
        i = self.first_invoke[c]
        return self.h.values[i].get("steps") if i >= 0 else None
