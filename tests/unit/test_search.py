"""Schedule search: generated plans stay in bounds, the shrink is bounded and finds the
minimal plan, and job chains count what the policy forces."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from harness.contract import Policy, cpu, db_write, fail, job, sleep
from harness.nemesis import after, kill, link_fault, plan, redispatch
from harness.run import SCENARIO_POLICY
from harness.run.accounting import job_chain
from harness.search import ALL_SHAPES, candidates, plans, shrink


@settings(max_examples=50, deadline=None)
@given(plans(policy=SCENARIO_POLICY, max_jobs=5, max_events=6, horizon=2.0, workers=2,
             shapes=ALL_SHAPES))
def test_generated_plans_are_in_bounds_and_in_time_order(p):
    assert 1 <= len(p.jobs) <= 5 and len(p.events) <= 6 and p.workers == 2
    order = [(e.when.at, e.when.attempts) for e in p.events]
    assert order == sorted(order)
    ids = {j.id for j in p.jobs}
    for e in p.events:
        assert 0 <= e.when.at <= 2.0 and 0 <= e.when.attempts <= 5
        if e.kind in ("kill", "signal", "pause"):
            assert e.target in (0, 1, "busy")
        elif e.kind == "redispatch":
            assert e.target in ids
        else:
            assert e.target in ("redis", "postgres", "smtp") and 0.05 <= e.duration <= 1.5


def test_shrink_drops_every_event_and_job_that_is_not_needed():
    jobs = [job(f"j{i}", db_write()) for i in range(8)]
    p = plan(2, jobs, link_fault("down", "smtp", after(at=0.1), seconds=0.2),
             kill(0, after(at=0.2)), redispatch("j3", after(at=0.3)),
             kill(1, after(at=0.4)))
    asked = []

    def fails(candidate):
        asked.append(candidate)
        return any(e.kind == "kill" and e.target == 0 for e in candidate.events)

    minimal, tried = shrink(p, fails)
    assert [(e.kind, e.target) for e in minimal.events] == [("kill", 0)]
    assert len(minimal.jobs) == 1
    assert tried == len(asked) <= 24


def test_shrink_respects_its_budget_and_keeps_a_plan_that_cannot_shrink():
    p = plan(1, [job("a", db_write())], kill(0))
    minimal, tried = shrink(p, lambda c: False, budget=3)
    assert (minimal, tried) == (p, 1)
    big = plan(1, [job(f"j{i}", db_write()) for i in range(64)],
               *[kill(0, after(at=i / 10)) for i in range(6)])
    _, tried = shrink(big, lambda c: True, budget=5)
    assert tried == 5


def test_candidates_keep_the_jobs_events_name():
    p = plan(1, [job(f"j{i}", db_write()) for i in range(4)], redispatch("j3"))
    halves = [c for c in candidates(p) if c.events]
    assert all("j3" in {j.id for j in c.jobs} for c in halves)


def test_job_chain_counts_attempts_timeouts_and_backoffs():
    p = Policy(job_timeout=1.0, max_tries=3, backoff_base=0.1, backoff_cap=0.4)
    assert job_chain(job("a", db_write(), sleep(0.2)), p) == 0.2
    assert job_chain(job("b", sleep(5)), p) == pytest.approx(3 * 1.0 + 0.1 + 0.2)
    assert job_chain(job("c", fail(times=1), cpu(0.5)), p) == pytest.approx(2 * 0.5 + 0.1)
    assert job_chain(job("d", fail()), p) == pytest.approx(0.1 + 0.2)
