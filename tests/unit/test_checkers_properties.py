"""Properties: a correct, fault-free run is never invalid; one planted anomaly is always found,
with the right kind and job, and no other job is blamed."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.checkers import Backoff, CheckResult, Policy, Validity, check
from harness.history import DISPATCH, DISPATCHER, OBSERVER, History, dispatch_value

POLICY = Policy(max_tries=3, backoff=Backoff(base=0.5, cap=2.0, jitter=0.2), job_timeout=1.0,
                lease=2.0)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Row = tuple[str, str, str, Any, int, float]


@dataclasses.dataclass
class Job:
    id: str
    steps: list[dict[str, Any]]
    dispatch: str  # ok, info (and ran), lost-info (info, never ran), fail
    twice: bool  # dispatched twice (the worker dedupes)

    @property
    def failures(self) -> int:
        """Attempts that fail before one can succeed (a job reruns from its first step)."""
        n = [s["times"] for s in self.steps if s["op"] in ("fail", "crash")]
        return max((POLICY.max_tries if t is None else t for t in n), default=0)

    @property
    def runs(self) -> bool:
        return self.dispatch in ("ok", "info")


STEP = st.sampled_from([
    {"op": "db_write"}, {"op": "db_write"}, {"op": "db_write"}, {"op": "email"},
    {"op": "sleep", "seconds": 0.01},
    {"op": "fail", "times": 1}, {"op": "fail", "times": 2}, {"op": "fail", "times": None},
    {"op": "crash", "times": 1},
])


@st.composite
def jobs(draw: st.DrawFn) -> list[Job]:
    """A few random jobs, and one plain job, so every anomaly can be planted somewhere."""
    n = draw(st.integers(0, 6))
    out = [Job("plain", [{"op": "db_write"}, {"op": "email"}], "ok", False)]
    for k in range(n):
        out.append(Job(
            id=f"job-{k}",
            steps=draw(st.lists(STEP, min_size=1, max_size=4)),
            dispatch=draw(st.sampled_from(["ok"] * 6 + ["info", "lost-info", "fail"])),
            twice=draw(st.booleans()) and k % 3 == 0,
        ))
    return out


class Run:
    """The history of a correct worker running ``jobs``, kept as rows tagged by job."""

    def __init__(self, jobs: list[Job], rnd: random.Random, probe: bool) -> None:
        self.jobs = {j.id: j for j in jobs}
        self.rnd = rnd
        self.probe = probe
        self.rows: list[Row] = []
        self.t = 0.0
        for j in jobs:
            for _ in range(2 if j.twice else 1):
                self.add("invoke", DISPATCHER, DISPATCH, dispatch_value(j.id, j.steps))
                result = "info" if j.dispatch == "lost-info" else j.dispatch
                self.add(result, DISPATCHER, DISPATCH, {"job": j.id})
        self.add("invoke", OBSERVER, "drain", {"deadline": POLICY.drain_deadline_s})
        self.add("ok", OBSERVER, "drain", {"pending": 0})
        self.add("ok", OBSERVER, "probe", {"available": probe} | ({} if probe else {
            "reason": "no probe configured"}))
        tables: dict[str, list[dict[str, Any]]] = {"state": [], "attempt": [], "effect": [],
                                                   "outcome": [], "lock": []}
        for j in jobs:
            if j.runs:
                self.simulate(j, tables)
        for f, values in tables.items():  # each table read in its own order
            rnd.shuffle(values)
            for v in values:
                if f != "state" or probe:
                    self.add("ok", OBSERVER, f, v)

    def add(self, type_: str, process: str, f: str, value: Any) -> None:
        self.t += 0.001
        self.rows.append((type_, process, f, value, int(self.t * 1e9), 1000.0 + self.t))

    def simulate(self, j: Job, tables: dict[str, list[dict[str, Any]]]) -> None:
        at = 2000.0 + self.rnd.random()
        failures = min(j.failures, POLICY.max_tries)
        tries = min(failures + 1, POLICY.max_tries)
        written: set[int] = set()
        for n in range(1, tries + 1):
            ok = n > failures
            crash = not ok and any(s["op"] == "crash" and s["times"] >= n for s in j.steps)
            for k, s in enumerate(j.steps):
                if s["op"] in ("fail", "crash") and not ok and (
                        s["times"] is None or s["times"] >= n):
                    break  # this attempt fails at this step
                if s["op"] == "db_write" and k not in written:
                    written.add(k)
                    tables["effect"].append({"job": j.id, "step": k, "kind": "db_write",
                                             "at": at})
                elif s["op"] == "email":  # at least once: sent again on every attempt
                    tables["effect"].append({"job": j.id, "step": k, "kind": "email", "at": at})
            ended = None if crash else at + 0.05
            status = "completed" if ok else "retrying" if n < POLICY.max_tries else "dead"
            tables["attempt"].append({"job": j.id, "attempt": n, "at": at} | (
                {} if crash else {"ended": ended, "status": status} | (
                    {} if ok else {"reason": "exception"})))
            # The next try comes after the backoff (or, after a crash, the lease).
            wait = POLICY.lease if crash else POLICY.backoff.delay(n) * (1 - self.rnd.random() * 0.2)
            at = (at if crash else at + 0.05) + wait + 0.001
        end = at
        if failures < POLICY.max_tries:
            tables["outcome"].append({"job": j.id, "status": "completed", "at": end})
        else:
            tables["outcome"].append({"job": j.id, "status": "dead", "reason": "exception",
                                      "at": end})
            tables["state"].append({"job": j.id, "state": "dead", "reason": "exception"})

    def history(self) -> History:
        return History.from_ops(self.rows)

    # planting anomalies --------------------------------------------------------------------
    def drop(self, job: str, *fs: str) -> None:
        self.rows = [r for r in self.rows if not (r[2] in fs and r[3].get("job") == job)]

    def observe(self, f: str, value: dict[str, Any]) -> None:
        self.add("ok", OBSERVER, f, value)

    def rows_of(self, job: str, f: str) -> list[int]:
        return [k for k, r in enumerate(self.rows) if r[2] == f and r[3].get("job") == job]


def failures_of(result: CheckResult) -> set[tuple[str, Any]]:
    return {(a.kind, a.job) for a in result.anomalies if a.severity == "failure"}


@SETTINGS
@given(jobs(), st.randoms(use_true_random=False), st.booleans())
def test_a_correct_fault_free_run_is_never_invalid(js: list[Job], rnd: random.Random,
                                                   probe: bool) -> None:
    run = Run(js, rnd, probe)
    result = check(run.history(), POLICY)
    assert result.validity is not Validity.INVALID, result.anomalies
    assert result.error is None
    in_system = any(j.runs for j in js)
    if probe and in_system:
        assert result.validity is Validity.VALID, result.notes


PLANTS = ["lost", "stuck", "duplicated", "unexpected", "unsuccessful_completion", "regressed",
          "retry_bound", "hammering", "unaccounted_failure", "lock_leaked", "recovered",
          "unresolved", "overlapping"]


def plant(run: Run, kind: str, rnd: random.Random) -> str | None:
    """Plant one anomaly of ``kind``; return the job it concerns (None: cannot here)."""
    acked = [j for j in run.jobs.values() if j.dispatch == "ok"]
    completed = [j for j in acked if j.failures < POLICY.max_tries]
    if kind == "unexpected":
        run.observe("outcome", {"job": "ghost", "status": "completed"})
        return "ghost"
    if not acked:
        return None
    j = rnd.choice(acked)
    obs = ("attempt", "effect", "outcome", "state", "lock")
    if kind in ("lost", "unresolved"):
        run.drop(j.id, *obs)
    elif kind == "stuck":
        run.drop(j.id, *obs)
        run.observe("state", {"job": j.id, "state": rnd.choice(["queued", "scheduled",
                                                               "leased"])})
    elif kind == "unaccounted_failure":
        run.drop(j.id, *obs)
        run.observe("attempt", {"job": j.id, "at": 2000.0, "ended": 2000.1,
                                "status": "dead", "reason": "exception"})
        run.observe("state", {"job": j.id, "state": "dead"})
    elif kind == "lock_leaked":
        run.observe("lock", {"key": f"unique:{j.id}", "job": j.id, "ttl": None})
    elif kind == "retry_bound":
        first = min(run.rows[k][3]["at"] for k in run.rows_of(j.id, "attempt"))
        for n in range(POLICY.max_tries):
            start = first - 100.0 * (n + 1)
            run.observe("attempt", {"job": j.id, "at": start, "ended": start + 1,
                                    "status": "retrying", "reason": "exception"})
    elif kind == "hammering":
        first = min(run.rows[k][3]["at"] for k in run.rows_of(j.id, "attempt"))
        run.observe("attempt", {"job": j.id, "at": first - 0.2, "ended": first - 0.01,
                                "status": "retrying", "reason": "exception"})
    elif kind == "overlapping":  # an earlier attempt still running when the first began
        first = min(run.rows[k][3]["at"] for k in run.rows_of(j.id, "attempt"))
        run.observe("attempt", {"job": j.id, "at": first - 100.0, "ended": first - 99.0,
                                "status": "retrying", "reason": "lease_lost",
                                "stopped": first + 0.5})
    elif kind == "recovered":
        k = next(k for k, r in enumerate(run.rows) if r[0] == "ok" and r[2] == DISPATCH
                 and r[3]["job"] == j.id)
        run.rows[k] = ("info", *run.rows[k][1:])
        if j.twice:  # the second acknowledgement too
            k = next(k for k, r in enumerate(run.rows) if r[0] == "ok" and r[2] == DISPATCH
                     and r[3]["job"] == j.id)
            run.rows[k] = ("info", *run.rows[k][1:])
    else:
        with_db = [c for c in completed if any(s["op"] == "db_write" for s in c.steps)]
        pool = with_db if kind in ("duplicated", "unsuccessful_completion") else completed
        if not pool:
            return None
        j = rnd.choice(pool)
        if kind == "duplicated":
            k = rnd.choice([k for k in run.rows_of(j.id, "effect")
                            if run.rows[k][3]["kind"] == "db_write"])
            run.rows.append(run.rows[k])
        elif kind == "unsuccessful_completion":
            k = rnd.choice([k for k in run.rows_of(j.id, "effect")
                            if run.rows[k][3]["kind"] == "db_write"])
            run.rows = [r for r in run.rows if r[3] != run.rows[k][3] or r[2] != "effect"]
        elif kind == "regressed":
            run.observe("state", {"job": j.id, "state": "dead"})
    return j.id


@pytest.mark.parametrize("kind", PLANTS)
@settings(SETTINGS, max_examples=25)
@given(js=jobs(), rnd=st.randoms(use_true_random=False))
def test_one_planted_anomaly_is_found_with_its_kind_and_job(
        kind: str, js: list[Job], rnd: random.Random) -> None:
    run = Run(js, rnd, probe=kind != "unresolved")
    assert check(run.history(), POLICY).validity is not Validity.INVALID
    job = plant(run, kind, rnd)
    assert job is not None
    result = check(run.history(), POLICY)
    found = {(a.kind, a.job) for a in result.anomalies}
    assert (kind, job) in found, result.anomalies
    if kind == "recovered":
        assert result.validity is Validity.VALID
    elif kind == "unresolved":
        assert result.validity is Validity.UNKNOWN
    else:
        assert result.validity is Validity.INVALID
        assert {j for _, j in failures_of(result)} == {job}, result.anomalies
    # Every anomaly points at ops about its job.
    h = run.history()
    for a in result.anomalies:
        if a.job is not None:
            assert a.ops and any(h.jobs[i] == a.job for i in a.ops)
