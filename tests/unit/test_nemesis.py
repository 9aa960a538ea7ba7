"""The nemesis vocabulary as data: events and plans round-trip, bad plans say what is wrong,
replay files fail with one line, and the run policy is one object for workers and checkers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.contract import db_write, email, job
from harness.nemesis import (
    Event,
    Plan,
    PlanError,
    after,
    dispatch,
    kill,
    kill_host,
    link_fault,
    pause,
    plan,
    redispatch,
    restart,
    restart_server,
    signal,
)
from harness.nemesis.replay import Replay, ReplayError, load
from harness.run import SCENARIO_POLICY

JOBS = [job("a", db_write(), email()), job("b", db_write(), unique_key="k")]


def every_kind() -> Plan:
    return plan(2, JOBS,
                kill("busy", after(effects=2, delay=0.05), down=0.1),
                signal(1, after(attempts=1), count=2),
                pause(0, after(at=0.5), seconds=0.4),
                restart(1),
                link_fault("latency", "redis", after(finished=1), seconds=1.0, ms=200),
                link_fault("down", "postgres", seconds=0.3),
                dispatch("b", after(at=1.0), through_proxy=True, timeout=0.2),
                redispatch("a"),
                restart_server("redis", down=0.2),
                restart_server("redis", after(effects=1), down=0.1, crash=True),
                Event("kill_job", "busy"),
                kill_host("a", after(attempts=1), down=0.2))


def test_a_plan_of_every_kind_round_trips_through_json():
    p = every_kind()
    assert Plan.from_dict(json.loads(p.to_json())) == p
    assert p.held_back == {"b"}
    text = p.describe()
    assert "after 2 effects +0.05s: SIGKILL worker busy for 0.10s" in text
    assert "t+0.50s: SIGSTOP worker 0 for 0.40s" in text
    assert "after 1 jobs finished: latency on link redis ms=200 for 1.00s" in text
    assert ("after 1 attempts: SIGKILL the worker at each attempt of job a, restarted after "
            "0.20s") in text
    assert "after 1 effects: restart server redis crash=True for 0.10s" in text


@pytest.mark.parametrize("make, message", [
    (lambda: Event("explode", 0), "unknown event kind 'explode'"),
    (lambda: Event("kill", "redis"), "target must be a worker index or 'busy'"),
    (lambda: Event("down", "mysql"), "target must be one of redis, postgres, smtp"),
    (lambda: Event("restart_server", "smtp"), "target must be one of redis, postgres"),
    (lambda: Event("pause", 0, duration=-1), "duration must be >= 0"),
    (lambda: plan(2, JOBS, kill(2)), "worker 2 does not exist"),
    (lambda: plan(2, JOBS, redispatch("zz")), "job 'zz' is not one of the plan's jobs"),
    (lambda: plan(2, JOBS, kill_host("zz")), "kill_host: job 'zz' is not one of the plan's jobs"),
    (lambda: Event("kill_host", 0), "kill_host: target must be a job id"),
    (lambda: plan(0, JOBS), "at least one worker"),
    (lambda: link_fault("melt", "redis", seconds=1), "unknown link fault 'melt'"),
    (lambda: Plan.from_dict({"workers": 1, "jobs": []} | {"events": [{"kind": "kill"}]}),
     "lacks the field 'target'"),
    (lambda: Plan.from_dict({"workers": 1, "jobs": [], "events": [
        {"kind": "kill", "target": 0, "when": {"soon": 1}}]}), "unknown trigger field"),
    (lambda: Plan.from_dict([1, 2]), "must be a JSON object"),
])
def test_bad_plans_name_what_is_wrong(make, message):
    with pytest.raises(PlanError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_dropping_jobs_drops_the_events_that_name_them():
    p = plan(1, JOBS, redispatch("a"), redispatch("b"), kill(0), kill_host("a"), kill_host("b"))
    smaller = p.with_jobs({"b"})
    assert [j.id for j in smaller.jobs] == ["b"]
    assert [(e.kind, e.target) for e in smaller.events] == [
        ("redispatch", "b"), ("kill", 0), ("kill_host", "b")]
    assert p.without_event(0).events == p.events[1:]


def test_replay_files_round_trip(tmp_path: Path):
    r = Replay(test="scenarios/test_x.py::test_y", seed=7,
               policy=SCENARIO_POLICY.tuned(lease=0.8).to_dict(), plan=every_kind())
    assert load(r.save(tmp_path / "replay.json")) == r


@pytest.mark.parametrize("content, message", [
    (None, "cannot read it"),
    ("{nope", "not JSON"),
    ('{"jobs": 3}', "not a jobchaos replay file"),
    ('{"format": "jobchaos-replay", "version": 99}', "replay format version 99"),
    ('{"format": "jobchaos-replay", "version": 1, "seed": 1, "plan": {}}',
     "the field 'test' is missing"),
    ('{"format": "jobchaos-replay", "version": 1, "test": "t", "seed": 1, "plan": '
     '{"workers": 1, "jobs": [], "events": [{"kind": "kill", "target": 5}]}}',
     "worker 5 does not exist"),
])
def test_unusable_replay_files_are_one_line_errors(tmp_path: Path, content, message):
    path = tmp_path / "replay.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ReplayError, match=message) as info:
        load(path)
    assert "\n" not in str(info.value) and "--jobchaos-replay" in str(info.value)


def test_one_policy_for_workers_and_checkers():
    tuned = SCENARIO_POLICY.tuned(lease=0.8, job_timeout=3.0, guarantees={"email": "exactly_once"})
    checkers = tuned.for_checkers()
    assert (checkers.lease, checkers.job_timeout, checkers.max_tries) == (0.8, 3.0, 3)
    assert dict(checkers.guarantees) == {"db_write": "exactly_once", "email": "exactly_once"}
    assert type(tuned).from_dict(tuned.to_dict()) == tuned
    with pytest.raises(TypeError, match="unknown policy field"):
        SCENARIO_POLICY.tuned(lease_seconds=1)


def test_a_crash_loop_is_bounded_by_the_policy():
    from harness.nemesis.crashloop import bound

    p = SCENARIO_POLICY.tuned(lease=0.8)
    # The drain deadline, and for every allowed try a lease to expire and a restart.
    assert bound(p, 0.2) == pytest.approx(p.for_checkers().drain_deadline_s + 3 * (0.8 + 0.2))
    assert bound(p, 0.2) < bound(p, 1.0)
# -- one worker's link ---------------------------------------------------------------------


def test_a_link_fault_on_one_workers_link_round_trips(tmp_path: Path):
    p = plan(3, JOBS,
             link_fault("down", "redis", after(effects=2), seconds=2.4, worker="busy"),
             link_fault("latency", "postgres", seconds=1.0, worker=2, ms=100),
             link_fault("down", "smtp", seconds=0.5))
    assert Plan.from_dict(json.loads(p.to_json())) == p
    assert [e.link_worker for e in p.events] == ["busy", 2, None]
    assert p.events[0].params == {"worker": "busy"}
    text = p.describe()
    assert "after 2 effects: down on link redis of worker busy for 2.40s" in text
    assert "latency on link postgres of worker 2 ms=100 for 1.00s" in text
    assert "down on link smtp for 0.50s" in text
    path = tmp_path / "replay.json"
    Replay(test="t", seed=1, policy=SCENARIO_POLICY.to_dict(), plan=p).save(path)
    assert load(path).plan == p


@pytest.mark.parametrize("make, message", [
    (lambda: link_fault("down", "redis", seconds=1, worker="idle"),
     "worker must be a worker index or 'busy'"),
    (lambda: link_fault("down", "redis", seconds=1, worker=-1),
     "worker must be a worker index or 'busy'"),
    (lambda: plan(2, JOBS, link_fault("down", "redis", seconds=1, worker=2)),
     "worker 2 does not exist"),
])
def test_bad_link_worker_names_what_is_wrong(make, message):
    with pytest.raises(PlanError, match=message):
        make()
