"""The history's JSON Schema: a recorded history validates, each kind of broken line is named
with its line and problem, and the schema's words are the contract's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness import contract
from harness.collectors import (
    AttemptRow,
    EffectRow,
    OutcomeRow,
    TableRows,
    probe_observations,
    table_observations,
)
from harness.history import (
    SCHEMA_FILE,
    HistoryError,
    Recorder,
    attempt_record,
    dispatch_value,
    effect_row,
    header_line,
    job_state,
    lock_held,
    reported_outcome,
    schema,
    sink_message,
    validate_file,
    validate_text,
    worker_life,
)


def recorded(path: Path) -> Path:
    """A history with every kind of op, as the runner, nemesis and collectors write them."""
    with Recorder(path) as rec:
        inv = rec.invoke("dispatcher", "dispatch", dispatch_value("a", [{"op": "db_write"}],
                                                                  unique="u"))
        rec.ok(inv, {"job": "a"})
        rec.fail(rec.invoke("dispatcher", "dispatch", dispatch_value("b", [])),
                 {"job": "b", "error": "refused"})
        rec.info(rec.invoke("dispatcher", "dispatch", {"job": 7, "steps": ["email"]}))
        # The runner's call, positional: (phase, id, target, kind, params).
        rec.record_fault("inject", "kill-1", "worker-2", "kill",
                         {"inflight": [{"job": "a", "attempt": 1, "attempt_id": 1,
                                        "worker": "worker-2"}]})
        rec.record_fault("heal", "kill-1", "worker-2", "kill", {})
        rec.record_fault("inject", "f1", "redis", "latency", {"ms": 50, "proxy": "redis"})
        drain = rec.invoke("observer", "drain", {"deadline": 9.5})
        rec.info(drain, {"pending": 1, "queued": 0, "jobs": ["b"]})
        rec.observe(*table_observations(TableRows(
            attempts=[AttemptRow(1, "a", 1, "worker-2", 1.0),
                      AttemptRow(2, "a", 2, "worker-1", 3.0, 3.55),
                      AttemptRow(3, "c", 1, "worker-1", 4.0, 4.4)],
            effects=[EffectRow("a", 0, 1, 3.5, attempt_id=2)],
            outcomes=[OutcomeRow("a", 1, "worker-2", "retrying", "killed", 2.0),
                      OutcomeRow("a", 2, "worker-1", "completed", None, 3.6, attempt_id=2),
                      OutcomeRow("c", 1, "worker-1", "dead", "memory", 4.5)])))
        rec.observe(sink_message("a", 1, ref="0", at=3.5, attempt=2, attempt_id=2),
                    effect_row(7, 0))
        rec.observe(*probe_observations(contract.ProbeState(
            queued=("q",), scheduled=("s",), leased=(contract.Lease("l", "worker-1", 1.0),),
            dead=(contract.Dead("c", "memory"), contract.Dead("d", "gone")),
            locks=(contract.Lock("u", None, "a"), contract.Lock("v", 1.5, None)))))
        rec.observe(lock_held("w", ttl=2.0, job="a", holder="a|worker-1|2", age=0.5))
        rec.observe(worker_life("worker-1", pid=7, at=0.5, ready=0.9, signalled=5.0, ended=5.1,
                                code=-15),
                    worker_life("worker-2", pid=8, at=0.5, ready=1.0, ended=2.0, code=1),
                    worker_life("worker-2", pid=9, at=2.1))
    return path


def test_a_recorded_history_is_valid(tmp_path: Path) -> None:
    path = recorded(tmp_path / "history.jsonl")
    n = validate_file(path)
    assert n == len(path.read_text().splitlines()) - 1 > 20
    assert validate_text(HEAD) == 0  # a header alone: an empty history


def _op(f: str, value: Any, type_: str = "ok", process: str = "observer", index: int = 0,
        **extra: Any) -> str:
    op = {"index": index, "type": type_, "process": process, "f": f, "value": value,
          "time": 0, "wall": 1.0} | extra
    return json.dumps({k: v for k, v in op.items() if v is not None}) + "\n"


HEAD = header_line(1.0)
PROBE = _op("probe", {"available": True})


@pytest.mark.parametrize(("text", "message"), [
    # The file's shape: header first and once, JSON lines, consecutive indices.
    (PROBE, r":1: the first line must be the header"),
    (HEAD.replace('"version":2', '"version":3') + PROBE, r":1: header: version: 2 was expected"),
    (HEAD.replace(',"created":1.0', "") + PROBE, r":1: header: 'created' is a required"),
    (HEAD + HEAD, r":2: a second header"),
    (HEAD + "{x\n" + PROBE, r":2: not JSON"),
    (HEAD + _op("probe", {"available": True}, index=1), r":2: index 1, expected 0"),
    ("\n", r"<history>: empty: no header line"),
    # Every op.
    (HEAD + _op("probe", {"available": True}, wall=None), r":2: probe op: 'wall' is a required"),
    (HEAD + _op("teleport", {}), r":2: teleport op: f: 'teleport' is not one of"),
    (HEAD + _op("outcome", {"job": "a", "status": "completed"}, "info"),
     r":2: outcome op: type: 'ok' was expected"),
    (HEAD + _op("effect", {"job": "a", "step": 0, "kind": "db_write"}, process="worker-1"),
     r":2: effect op: process: 'observer' was expected"),
    # dispatch, drain
    (HEAD + _op("dispatch", {"job": "a"}, "invoke", "dispatcher"),
     r":2: dispatch op: value: 'steps' is a required property"),
    (HEAD + _op("dispatch", {"job": ["a"]}, "ok", "dispatcher"),
     r":2: dispatch op: value.job: \['a'\] is not of type 'string', 'integer'"),
    (HEAD + _op("drain", {"pending": -1}, "info"), r":2: drain op: value.pending: -1 is less"),
    # inject / heal: the target, not the old link
    (HEAD + _op("inject", {"fault": "k", "link": "worker-2", "kind": "kill", "params": {}},
                "info", "nemesis"), r":2: inject op: value: 'target' is a required property"),
    (HEAD + _op("heal", {"fault": "f", "target": "redis", "kind": "latency", "params": {}},
                "ok", "nemesis"), r":2: heal op: type: 'info' was expected"),
    (HEAD + _op("inject", {"fault": "k", "target": "worker-1", "kind": "kill",
                           "params": {"inflight": [{"attempt": 1}]}}, "info", "nemesis"),
     r":2: inject op: value.params.inflight.0: 'job' is a required property"),
    # effect
    (HEAD + _op("effect", {"job": "a", "step": 0, "kind": "sms"}),
     r":2: effect op: value.kind: 'sms' is not one of \['db_write', 'email'\]"),
    (HEAD + _op("effect", {"step": 0, "kind": "email"}), r":2: effect op: value: 'job' is a"),
    # outcome: the contract's words, a reason exactly when dead
    (HEAD + _op("outcome", {"job": "a", "status": "failed", "reason": "exception"}),
     r":2: outcome op: value.status: 'failed' is not one of \['completed', 'retrying', 'dead'\]"),
    (HEAD + _op("outcome", {"job": "a", "status": "dead", "reason": "signal"}),
     r":2: outcome op: value.reason: 'signal' is not one of \['exception', 'timeout', "
     r"'killed', 'memory', 'lease_lost'\]"),
    (HEAD + _op("outcome", {"job": "a", "status": "dead"}),
     r":2: outcome op: value: 'reason' is a required property"),
    (HEAD + _op("outcome", {"job": "a", "status": "completed", "reason": "timeout"}),
     r":2: outcome op: value: 'reason' is not allowed with status 'completed'"),
    # attempt: status and reason instead of result; ended and status together
    (HEAD + _op("attempt", {"job": "a", "at": 1.0, "ended": 2.0, "result": "ok"}),
     r":2: attempt op: value: Additional properties are not allowed \('result' was unexpected"),
    (HEAD + _op("attempt", {"job": "a", "at": 1.0, "ended": 2.0}),
     r":2: attempt op: value: 'status' is a dependency of 'ended'"),
    (HEAD + _op("attempt", {"job": "a", "at": 1.0, "ended": 2.0, "status": "retrying"}),
     r":2: attempt op: value: 'reason' is a required property"),
    (HEAD + _op("attempt", {"job": "a", "ended": 2.0, "status": "completed"}),
     r":2: attempt op: value: 'at' is a required property"),
    # attempt_id: an identity, a number or a string
    (HEAD + _op("attempt", {"job": "a", "at": 1.0, "attempt_id": [1]}),
     r":2: attempt op: value.attempt_id: \[1\] is not of type 'integer', 'string'"),
    (HEAD + _op("outcome", {"job": "a", "status": "completed", "attempt_id": 1.5}),
     r":2: outcome op: value.attempt_id: 1.5 is not of type 'integer', 'string'"),
    # probe, state, lock
    (HEAD + _op("probe", {"available": "yes"}), r":2: probe op: value.available: 'yes' is not"),
    (HEAD + _op("state", {"job": "a", "state": "running"}),
     r":2: state op: value.state: 'running' is not one of \['queued', 'scheduled', 'leased', "
     r"'dead'\]"),
    (HEAD + _op("lock", {"key": "k"}), r":2: lock op: value: 'ttl' is a required property"),
])
def test_each_kind_of_broken_line_is_named(text: str, message: str) -> None:
    with pytest.raises(HistoryError, match=message):
        validate_text(text)


def test_a_broken_file_names_its_path_and_line(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text(HEAD + PROBE + _op("state", {"job": "a", "state": "gone"}, index=1))
    with pytest.raises(HistoryError, match=rf"^{path}:3: state op: value.state: 'gone'"):
        validate_file(path)


def test_a_cut_last_line_is_a_crashed_run_not_an_error() -> None:
    assert validate_text(HEAD + PROBE + '{"index": 1, "type": "o') == 1


def test_the_schema_is_shipped_and_speaks_the_contracts_words() -> None:
    s = schema()
    assert SCHEMA_FILE == "history-v2.schema.json"
    assert s["$defs"]["header"]["properties"]["version"] == {"const": 2}
    words = {name: tuple(s["$defs"][name]["enum"]) for name in (
        "outcome_status", "terminal_status", "failure_reason", "job_state")}
    assert words == {"outcome_status": contract.OUTCOME_STATUSES,
                     "terminal_status": contract.TERMINAL_STATUSES,
                     "failure_reason": contract.FAILURE_REASONS,
                     "job_state": contract.JOB_STATES}
    assert contract.TERMINAL_STATUSES == ("completed", "dead")
    assert set(contract.TERMINAL_STATUSES) <= set(contract.OUTCOME_STATUSES)
    # The tables' CHECK constraints are generated from the same words.
    assert ("CHECK (status IN ('completed', 'retrying', 'dead'))" in contract.SCHEMA_SQL
            and "CHECK (reason IN ('exception', 'timeout', 'killed', 'memory', 'lease_lost'))"
            in contract.SCHEMA_SQL)


def test_typed_constructors_write_valid_values() -> None:
    lines = [HEAD]
    for n, obs in enumerate([
            reported_outcome("a", "dead", reason="lease_lost", attempt=2, worker="w", at=1.0),
            attempt_record("a", at=1.0, ended=2.0, status="dead", reason="timeout"),
            job_state("a", "dead", reason="killed", at=3.0)]):
        lines.append(_op(obs.f, obs.value, index=n))
    assert validate_text("".join(lines)) == 3
