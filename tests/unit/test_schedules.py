"""Fault schedules: data in and out, generation within bounds, and bounded shrinking."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from harness.contract import Policy, cpu, db_write, fail, job, sleep
from harness.scenario import job_chain
from harness.schedules import Event, Schedule, schedules, shrink


def test_schedule_round_trips_through_json():
    s = Schedule(jobs=4, workers=3, events=(Event(0.1, "kill", 1), Event(0.5, "down", "redis", 0.3)))
    assert Schedule.from_json(s.to_json()) == s
    assert "t+0.50s down on link redis for 0.30s" in s.describe()


@settings(max_examples=50, deadline=None)
@given(schedules(max_jobs=5, max_events=6, horizon=2.0, workers=2))
def test_generated_schedules_are_in_bounds_and_in_time_order(s):
    assert 1 <= s.jobs <= 5 and len(s.events) <= 6
    assert [e.at for e in s.events] == sorted(e.at for e in s.events)
    for e in s.events:
        assert 0 <= e.at <= 2.0
        if e.kind in ("kill", "sigterm"):
            assert e.target in (0, 1)
        elif e.kind == "duplicate":
            assert 0 <= e.target < s.jobs
        else:
            assert e.target in ("redis", "postgres", "smtp") and 0.05 <= e.duration <= 1.5


def test_shrink_drops_every_event_that_is_not_needed():
    s = Schedule(jobs=8, events=(Event(0.1, "down", "smtp", 0.2), Event(0.2, "kill", 0),
                                 Event(0.3, "duplicate", 3), Event(0.4, "sigterm", 1)))
    asked = []

    def fails(candidate: Schedule) -> bool:
        asked.append(candidate)
        return any(e.kind == "kill" for e in candidate.events)

    minimal, tried = shrink(s, fails)
    assert minimal.events == (Event(0.2, "kill", 0),)
    assert minimal.jobs == 1
    assert tried == len(asked) <= 24


def test_shrink_respects_its_budget_and_keeps_a_schedule_that_cannot_shrink():
    s = Schedule(jobs=1, events=(Event(0.1, "kill", 0),))
    minimal, tried = shrink(s, lambda c: False, budget=3)
    assert (minimal, tried) == (s, 1)
    big = Schedule(jobs=64, events=tuple(Event(i / 10, "kill", 0) for i in range(6)))
    _, tried = shrink(big, lambda c: True, budget=5)
    assert tried == 5


def test_job_chain_counts_attempts_timeouts_and_backoffs():
    p = Policy(job_timeout=1.0, max_tries=3, backoff_base=0.1, backoff_cap=0.4)
    assert job_chain(job("a", db_write(), sleep(0.2)), p) == 0.2
    assert job_chain(job("b", sleep(5)), p) == pytest.approx(3 * 1.0 + 0.1 + 0.2)  # every try times out
    assert job_chain(job("c", fail(times=1), cpu(0.5)), p) == pytest.approx(2 * 0.5 + 0.1)
    assert job_chain(job("d", fail()), p) == pytest.approx(0.1 + 0.2)
