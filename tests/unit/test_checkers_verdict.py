"""The verdict a person reads: the text table and results.json."""

from __future__ import annotations

import json
from pathlib import Path

from jobchaos_histories import Builder, run

from harness.checkers import Backoff, Policy, check
from harness.report.verdict import render, results_dict, write_results

POLICY = Policy(backoff=Backoff(base=0.5))


def failing_run() -> Builder:
    b = Builder()
    b.fault("inject", "f1", "redis", "latency")  # 0
    b.dispatch("a", ["db_write", "email"])  # 1 2
    b.dispatch("b")  # 3 4
    b.fault("heal", "f1", "redis", "latency")  # 5
    b.dispatch("c")  # 6 7
    b.drain(pending=1)  # 8 9
    b.probe()  # 10
    run(b, "a", ["db_write", "email"], start=b.now)  # 11 12 13 14
    b.effect("a", 0)  # 15: twice
    run(b, "c", ["db_write"], start=b.now)  # 16 17 18
    return b


def test_a_failing_check_renders_a_table_a_person_can_act_on() -> None:
    h = failing_run().build()
    text = render(check(h, POLICY), h)
    assert text == """\
jobchaos verdict: INVALID
  queue invalid, effects invalid, outcomes valid, retries valid, locks valid, workers valid, timeouts valid
  jobs: 3 dispatched, 3 acknowledged, 2 completed, 2 attempts, 4 effects
  anomalies: lost 1, duplicated 1

anomaly     job  evidence                                                        faults active
----------  ---  --------------------------------------------------------------  ---------------------
lost        b    acknowledged, no terminal outcome, not in the system            latency on redis [f1]
                   #3 dispatcher invoke dispatch job=b steps=db_write
                   #4 dispatcher ok dispatch job=b
                   #10 observer ok probe available=true
duplicated  a    step 0 db_write happened 2 times (exactly once)                 latency on redis [f1]
                   #1 dispatcher invoke dispatch job=a steps=db_write,email
                   #2 dispatcher ok dispatch job=a
                   #12 observer ok effect job=a step=0 kind=db_write at=+0.010s
                   #13 observer ok effect job=a step=1 kind=email at=+0.010s
                   #15 observer ok effect job=a step=0 kind=db_write
"""


def test_a_valid_or_unknown_verdict_says_why() -> None:
    b = Builder()
    b.dispatch("a")
    b.probe()
    run(b, "a", ["db_write"], start=b.now)
    h = b.build()
    assert render(check(h, POLICY), h).splitlines()[:2] == [
        "jobchaos verdict: VALID",
        "  queue valid, effects valid, outcomes valid, retries valid, locks valid, "
        "workers valid, timeouts valid"]
    b = Builder()
    b.dispatch("a")
    b.probe(False, "no probe configured")
    h = b.build()
    text = render(check(h, POLICY), h)
    assert text.startswith("jobchaos verdict: UNKNOWN\n")
    assert "  note: locks: no probe: locks held cannot be seen\n" in text
    assert "unresolved (unknown)  a    no terminal outcome; lost or stuck (no probe configured)" in text


def test_rows_are_capped_and_the_rest_counted() -> None:
    b = Builder()
    for n in range(12):
        b.dispatch(f"j{n}")
    b.probe()
    h = b.build()
    text = render(check(h, POLICY), h, max_rows=3)
    assert text.count("acknowledged, no terminal outcome") == 3
    assert text.endswith("... and 9 more anomalies (counted; samples in results.json)\n")


def test_results_json_holds_everything(tmp_path: Path) -> None:
    h = failing_run().build()
    result = check(h, POLICY)
    path = write_results(tmp_path, result, h, POLICY)
    assert path == tmp_path / "results.json"
    data = json.loads(path.read_text())
    assert data == json.loads(json.dumps(results_dict(result, h, POLICY)))
    assert data["validity"] == "invalid"
    assert list(data["checkers"]) == ["queue", "effects", "outcomes", "retries", "locks",
                                     "workers", "timeouts"]
    assert data["checkers"]["queue"]["counts"]["lost"] == 1
    assert data["anomalies"][0] == {
        "kind": "lost", "job": "b", "severity": "failure",
        "detail": "acknowledged, no terminal outcome, not in the system", "ops": [3, 4, 10],
        "evidence": ["#3 dispatcher invoke dispatch job=b steps=db_write",
                     "#4 dispatcher ok dispatch job=b", "#10 observer ok probe available=true"],
        "faults": ["latency on redis [f1]"]}
    assert data["faults"] == [{"fault": "f1", "kind": "latency", "target": "redis", "params": {},
                               "inject": 0, "heal": 5, "start": 1000.001, "end": 1000.006}]
    assert data["history"] == {"ops": 19, "truncated": False}
    assert data["policy"]["max_tries"] == 3
    assert data["policy"]["backoff"] == {"base": 0.5, "cap": 2.0, "jitter": 0.0, "factor": 2.0}


def _strike(b: Builder, fault: str, kind: str, inflight: object, **params: object) -> None:
    b.fault("inject", fault, "worker-1", kind, {**params, "inflight": inflight})
    b.fault("heal", fault, "worker-1", kind)


def test_a_strike_that_interrupted_nothing_is_a_note_not_an_anomaly() -> None:
    b = Builder()
    b.dispatch("a")
    b.probe()
    run(b, "a", ["db_write"], start=b.now)
    plain = check(b.build(), POLICY)
    running = [{"job": "a", "attempt": 1, "worker": "worker-1"}]
    _strike(b, "kill-1", "kill", [])
    _strike(b, "kill_job-2", "kill_job", running)
    _strike(b, "signal-3", "signal", [], signal="SIGHUP")  # not a stop: it interrupts nothing
    _strike(b, "signal-4", "signal", None, signal="SIGTERM")  # the nemesis could not tell
    _strike(b, "restart-5", "restart", [], signal="SIGTERM")
    h = b.build()
    result = check(h, POLICY)
    assert (result.validity, result.anomalies) == (plain.validity, plain.anomalies)
    text = render(result, h)
    assert [line for line in text.splitlines() if "interrupted nothing" in line] == [
        "  note: kill on worker-1 [kill-1] interrupted nothing: no attempt was running on "
        "worker-1 when it struck",
        "  note: restart on worker-1 [restart-5] interrupted nothing: no attempt was running "
        "on worker-1 when it struck"]
    data = results_dict(result, h, POLICY)
    assert data["idle_strikes"] == ["kill-1", "restart-5"]
    assert data["strikes"] == [
        {"fault": "kill-1", "kind": "kill", "target": "worker-1", "interrupted": []},
        {"fault": "kill_job-2", "kind": "kill_job", "target": "worker-1",
         "interrupted": running},
        {"fault": "signal-4", "kind": "signal", "target": "worker-1", "interrupted": None},
        {"fault": "restart-5", "kind": "restart", "target": "worker-1", "interrupted": []}]


def test_idle_strikes_past_five_are_counted() -> None:
    b = Builder()
    for n in range(7):
        _strike(b, f"kill-{n}", "kill", [])
    h = b.build()
    text = render(check(h, POLICY), h)
    assert text.count("interrupted nothing: no attempt") == 5
    assert "  note: ... and 2 more strikes that interrupted nothing (in results.json)\n" in text
