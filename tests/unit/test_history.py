"""The op model, the recorder, the loader and the query helpers (pure, no servers)."""

from __future__ import annotations

import dataclasses
import enum
import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import harness.history as hh
from harness.history import (
    HISTORY_FORMAT,
    HISTORY_VERSION,
    FaultSpan,
    History,
    HistoryError,
    Op,
    Recorder,
    _loader,
    attempt_record,
    dispatch_value,
    effect_row,
    header_line,
    job_state,
    load,
    loads,
    lock_held,
    probe_status,
    reported_outcome,
    sink_message,
)


class Ticks:
    """A fake clock: monotonic ns and wall seconds advance 1 ms per reading."""

    def __init__(self) -> None:
        self.n = 0

    def mono(self) -> int:
        self.n += 1
        return self.n * 1_000_000

    def wall(self) -> float:
        return 1000.0 + self.n / 1000


def recorder(path: Path | None = None) -> Recorder:
    t = Ticks()
    return Recorder(path, monotonic_ns=t.mono, wall=t.wall)


# --- observations ---------------------------------------------------------------------------


def test_observation_constructors_leave_out_what_is_unknown() -> None:
    assert effect_row("j1", 0).value == {"job": "j1", "step": 0, "kind": "db_write"}
    assert sink_message("j1", 2, ref="<m1@x>", at=5.0).value == {
        "job": "j1", "step": 2, "kind": "email", "ref": "<m1@x>", "at": 5.0}
    assert reported_outcome("j1", "dead", reason="timeout", attempt=3).value == {
        "job": "j1", "status": "dead", "reason": "timeout", "attempt": 3}
    assert attempt_record("j1", at=1.0).value == {"job": "j1", "at": 1.0}
    assert attempt_record("j1", at=1.0, ended=2.0, status="retrying", reason="memory",
                          attempt=2, worker="worker-1").value == {
        "job": "j1", "attempt": 2, "worker": "worker-1", "at": 1.0, "ended": 2.0,
        "status": "retrying", "reason": "memory"}
    assert probe_status(False, "no probe configured").value == {
        "available": False, "reason": "no probe configured"}
    assert job_state("j1", "dead", reason="exception").value == {
        "job": "j1", "state": "dead", "reason": "exception"}
    # A lock's ttl is always there: None means it never expires.
    assert lock_held("u:j1", ttl=None).value == {"key": "u:j1", "ttl": None}
    assert [o.f for o in (effect_row("j", 0), reported_outcome("j", "completed"),
                          attempt_record("j", at=0), probe_status(True), job_state("j", "queued"),
                          lock_held("k", ttl=1))] == [
        "effect", "outcome", "attempt", "probe", "state", "lock"]
    assert dispatch_value("j1", [{"op": "db_write"}], unique="u1") == {
        "job": "j1", "steps": [{"op": "db_write"}], "unique": "u1"}
    assert hh.worker(2) == "worker-2"


# --- the recorder ---------------------------------------------------------------------------


def test_recorder_writes_each_op_as_it_happens(tmp_path: Path) -> None:
    path = tmp_path / "run" / "history.jsonl"
    with recorder(path) as rec:
        # The header is the first line, written at once.
        assert json.loads(path.read_text()) == {
            "format": "jobchaos-history", "version": 2, "created": 1000.001}
        inv = rec.invoke("dispatcher", "dispatch", dispatch_value("j1", [{"op": "db_write"}]))
        # Flushed already: a crash now would still leave this line.
        assert json.loads(path.read_text().splitlines()[1]) == {
            "index": 0, "type": "invoke", "process": "dispatcher", "f": "dispatch",
            "value": {"job": "j1", "steps": [{"op": "db_write"}]}, "time": 1_000_000,
            "wall": 1000.002}
        ok = rec.ok(inv, {"job": "j1"})
        info = rec.info(rec.invoke("dispatcher", "dispatch", {"job": "j2"}))
        fail = rec.fail(rec.invoke("dispatcher", "dispatch", {"job": "j3"}), {"job": "j3",
                                                                           "error": "refused"})
        rec.record_fault("inject", "f1", "redis", "latency", {"ms": 50})
        rec.observe(effect_row("j1", 0), probe_status(True))
    assert (ok.type, ok.process, ok.f, ok.value) == ("ok", "dispatcher", "dispatch",
                                                     {"job": "j1"})
    assert info.value == {"job": "j2"}  # a completion defaults to the invocation's value
    assert fail.value == {"job": "j3", "error": "refused"}
    lines = path.read_text().splitlines()
    assert len(lines) == 10
    assert json.loads(lines[7]) | {"time": 0, "wall": 0} == {
        "index": 6, "type": "info", "process": "nemesis", "f": "inject",
        "value": {"fault": "f1", "target": "redis", "kind": "latency", "params": {"ms": 50}},
        "time": 0, "wall": 0}
    assert json.loads(lines[9])["process"] == "observer"
    loaded = load(path)
    assert list(loaded) == list(rec.history())
    assert loaded.created == rec.history().created == 1000.001


def test_recorder_is_the_faults_recorder() -> None:
    @runtime_checkable
    class FaultRecorder(Protocol):
        def record_fault(self, phase: Literal["inject", "heal"], fault_id: str, target: str,
                         kind: str, params: Mapping[str, object]) -> None: ...

    rec = recorder()
    assert isinstance(rec, FaultRecorder)
    rec.record_fault("inject", "f1", "postgres", "reset_peer", {"timeout": 0})
    rec.record_fault("heal", "f1", "postgres", "reset_peer", {})
    with pytest.raises(HistoryError, match="phase"):
        rec.record_fault("boom", "f1", "", "", {})  # type: ignore[arg-type]
    spans = rec.history().fault_spans()
    assert spans == (FaultSpan("f1", "reset_peer", "postgres", {"timeout": 0}, 0, 1,
                               1000.002, 1000.003),)


def test_recorder_stores_what_a_loader_reads_back(tmp_path: Path) -> None:
    class Colour(enum.Enum):
        RED = "red"

    @dataclasses.dataclass
    class Point:
        x: int

    with recorder(tmp_path / "h.jsonl") as rec:
        rec.append("ok", "observer", "effect", {"t": (1, 2), "s": {3, 1}, "p": tmp_path,
                                                "c": Colour.RED, "d": Point(1), "b": b"hi"})
    expected = {"t": [1, 2], "s": [1, 3], "p": str(tmp_path), "c": "red", "d": {"x": 1},
                "b": "hi"}
    assert rec.history()[0].value == expected
    assert load(tmp_path / "h.jsonl")[0].value == expected


def test_recorder_rejects_what_is_not_an_op() -> None:
    rec = recorder()
    with pytest.raises(HistoryError, match="op type"):
        rec.append("done", "observer", "effect")  # type: ignore[arg-type]
    with pytest.raises(HistoryError, match="not an invocation"):
        rec.ok(rec.append("ok", "observer", "effect"))


def test_recorder_is_thread_safe(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    rec = Recorder(path)
    per_thread = 200

    def work(k: int) -> None:
        for n in range(per_thread):
            inv = rec.invoke(f"worker-{k}", "dispatch", {"job": f"{k}-{n}"})
            rec.ok(inv)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rec.close()
    loaded = load(path)
    assert len(loaded) == len(rec) == 4 * per_thread * 2
    assert [op.index for op in loaded] == list(range(len(loaded)))
    assert list(loaded) == list(rec.history())
    times = loaded.times
    assert times == sorted(times)


# --- the loader -----------------------------------------------------------------------------


def _text(*values: dict[str, object]) -> str:
    """A hand-written history: the header, then one line per value."""
    return header_line(1.0) + "".join(
        json.dumps({"index": i, "type": "ok", "process": "observer", "f": "effect",
                    "value": v, "time": i, "wall": 1.0 + i}) + "\n" for i, v in enumerate(values))


def test_a_crashed_run_loses_only_its_cut_last_line(tmp_path: Path) -> None:
    text = _text({"job": "a"}, {"job": "b"})
    cut = text + '{"index": 2, "type": "ok", "pro'
    h = loads(cut)
    assert (len(h), h.truncated) == (2, True)
    # A complete last line without its newline is kept.
    h = loads(text.rstrip("\n"))
    assert (len(h), h.truncated, h[1].value) == (2, False, {"job": "b"})
    (tmp_path / "h.jsonl").write_text(cut)
    assert load(tmp_path / "h.jsonl").truncated


@pytest.mark.parametrize(("text", "message"), [
    # Lines are numbered in the file: the header is line 1, op 0 line 2.
    (_text({"job": "a"}) + "{not json}\n" + _text({"job": "b"}), r"<history>:3: not a JSON op"),
    (header_line(1.0) + '{"index": 0, "type": "ok"}\n', r"<history>:2: an op needs index"),
    (_text({"job": "a"}).replace('"index": 0', '"index": 7'), r":2: index 7, expected 0"),
    (_text({"job": "a"}, {"job": "b"}).replace('"index": 1', '"index": 0'),
     r":3: index 0, expected 1"),
    (_text({"job": "a"}).replace('"ok"', '"done"'), r":2: type 'done' is not one of"),
])
def test_a_bad_line_is_named(text: str, message: str) -> None:
    with pytest.raises(HistoryError, match=message):
        loads(text)


def test_the_header_names_the_format_and_its_version(tmp_path: Path) -> None:
    assert (HISTORY_FORMAT, HISTORY_VERSION) == ("jobchaos-history", 2)
    assert json.loads(header_line(5.0)) == {"format": "jobchaos-history", "version": 2,
                                            "created": 5.0}
    assert loads(_text({"job": "a"})).created == 1.0
    # Blank lines before the header are skipped; line numbers still count them.
    with pytest.raises(HistoryError, match=r"<history>:4: index 3, expected 0"):
        loads("\n\n" + _text({"job": "a"}).replace('"index": 0', '"index": 3'))


@pytest.mark.parametrize(("text", "message"), [
    ("", r"<history>:1: empty: no history header"),
    ("\n\n", r"<history>:3: empty: no history header"),
    # A history written before version 2: the fix is named.
    (_text({"job": "a"}).split("\n", 1)[1],
     r"<history>:1: no history header: the first line is an op, as in histories written "
     r"before format version 2. Record it again .* harness.history.header_line\(\)"),
    ("[1, 2]\n", r"<history>:1: no history header; a history's first line is its header"),
    ("{oops\n", r"<history>:1: no history header, the first line is not JSON"),
    ('{"format": "other", "version": 2, "created": 0}\n',
     r"<history>:1: format 'other' is not 'jobchaos-history'"),
    ('{"format": "jobchaos-history", "version": 3, "created": 0}\n',
     r"<history>:1: history format version 3 is newer than this jobchaos reads \(version 2\): "
     r"upgrade jobchaos"),
    ('{"format": "jobchaos-history", "version": 1, "created": 0}\n',
     r"<history>:1: history format version 1 is no longer read"),
    ('{"format": "jobchaos-history", "version": "2", "created": 0}\n',
     r"<history>:1: the header's version '2' is not an integer"),
    ('{"format": "jobchaos-history", "version": 2}\n', r"<history>:1: the header has no 'created'"),
])
def test_a_missing_or_foreign_header_is_an_error(text: str, message: str) -> None:
    with pytest.raises(HistoryError, match=message):
        loads(text)


def test_a_file_without_header_is_named(tmp_path: Path) -> None:
    path = tmp_path / "old.jsonl"
    path.write_text(_text({"job": "a"}).split("\n", 1)[1])
    with pytest.raises(HistoryError, match=rf"^{path}:1: no history header"):
        load(path)


def test_blank_lines_are_skipped() -> None:
    text = _text({"job": "a"}, {"job": "b"}).replace("\n", "\n\n", 1)
    assert [op.value for op in loads(text)] == [{"job": "a"}, {"job": "b"}]


def test_loading_in_small_blocks_gives_the_same_history(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    rec = recorder(tmp_path / "h.jsonl")
    for n in range(300):
        job = f"job-{n % 40}"
        rec.ok(rec.invoke("dispatcher", "dispatch",
                          dispatch_value(job, [{"op": "db_write"}, {"op": "sleep", "s": 1}])))
        rec.observe(effect_row(job, 0, ref=n))
    rec.close()
    monkeypatch.setattr(_loader, "BLOCK", 97)  # blocks end mid-line (and mid-header)
    h = load(tmp_path / "h.jsonl")
    assert list(h) == list(rec.history())
    # Job ids and equal step lists are stored once.
    assert h.jobs[0] is h.jobs[1] is h.values[2]["job"] is h.jobs[80 * 3]
    assert h.values[0]["steps"] is h.values[3]["steps"]
    assert h.jobs.count(None) == 0


def test_dumps_and_loads_round_trip() -> None:
    rec = recorder()
    rec.record_fault("inject", "f1", "smtp", "timeout", {"ms": 0})
    rec.observe(lock_held("k", ttl=None, job=3))
    h = rec.history()
    assert h.dumps().startswith(header_line(1000.001))
    back = loads(h.dumps())
    assert (list(back), back.created) == (list(h), 1000.001)
    # A history made from ops estimates its start from the first op.
    made = History.from_ops([("ok", "observer", "probe", {"available": True}, 2_000_000_000,
                              12.5)])
    assert made.created is None and loads(made.dumps()).created == 10.5


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=3),
    max_leaves=8), max_size=8))
def test_any_json_value_round_trips(values: list[object]) -> None:
    rec = recorder()
    for v in values:
        rec.append("ok", "observer", "x", v)
    h = rec.history()
    assert list(loads(h.dumps())) == list(h)
    assert [op.value for op in h] == values


# --- history and query helpers --------------------------------------------------------------


def _small() -> History:
    rec = recorder()
    rec.record_fault("inject", "f1", "redis", "latency", {})  # 0, wall 1000.002
    inv = rec.invoke("dispatcher", "dispatch", {"job": "a"})  # 1
    rec.record_fault("inject", "f2", "worker-1", "kill", {  # 2
        "inflight": [{"job": "a", "attempt": 1, "worker": "worker-1"}]})
    rec.ok(inv)  # 3
    rec.record_fault("heal", "f1", "redis", "latency", {})  # 4, wall 1000.006
    rec.invoke("dispatcher", "dispatch", {"job": "b"})  # 5: never completed
    rec.observe(attempt_record("a", at=1000.004, ended=1000.005, status="completed"))  # 6
    rec.observe(job_state("b", "queued"))  # 7, wall 1000.009
    return rec.history()


def test_history_indexing_and_filters() -> None:
    h = _small()
    assert len(h) == 8
    assert h[-1] == h[7] == Op(7, "ok", "observer", "state", {"job": "b", "state": "queued"},
                               8_000_000, 1000.009)
    assert [op.index for op in h[1:4]] == [1, 2, 3]
    assert h.indices("dispatch") == [1, 3, 5]
    assert h.indices("nothing") == []
    assert [op.index for op in h.ops("dispatch", type="invoke")] == [1, 5]
    assert [op.index for op in h.ops(process="nemesis")] == [0, 2, 4]
    assert [op.index for op in h.of_job("a")] == [1, 3, 6]
    assert h.jobs == [None, "a", None, "a", None, "b", "a", "b"]
    assert h.completion(1) == h[3]
    assert h.completion(5) is None
    assert repr(h) == "<History 8 ops>"


def test_faults_are_paired_and_lined_up_with_events() -> None:
    h = _small()
    f1, f2 = h.fault_spans()
    assert (f1.fault, f1.inject, f1.heal, f1.end, f1.label()) == (
        "f1", 0, 4, 1000.006, "latency on redis [f1]")
    assert (f2.heal, f2.end, f2.label()) == (None, None, "kill on worker-1 [f2]")  # not healed
    assert f2.target == "worker-1" and f1.target == "redis"
    assert f2.inflight == ({"job": "a", "attempt": 1, "worker": "worker-1"},)
    assert f1.inflight == ()  # the nemesis recorded none
    # The attempt ran 1000.004..1000.005: both faults were active.
    assert h.event_time(6) == 1000.004
    assert h.faults_active([6]) == [f1, f2]
    # The queue state was seen at 1000.009: only the unhealed fault.
    assert h.faults_active([7]) == [f2]
    assert h.faults_active([0, 4]) == []  # fault ops themselves are not events
    assert h.describe(6) == ("#6 observer ok attempt job=a status=completed at=+0.002s "
                             "ended=+0.003s")


def test_history_columns_must_agree() -> None:
    with pytest.raises(HistoryError, match="differ in length"):
        History(["ok"], [], [], [], [], [])
    with pytest.raises(HistoryError, match="op type"):
        History.from_ops([("done", "p", "f", None, 0, 0.0)])
    assert History([], [], [], [], [], []).fault_spans() == ()


def test_faults_aimed_at_another_job_are_not_active_for_this_one() -> None:
    rec = recorder()
    rec.invoke("dispatcher", "dispatch", {"job": "a"})  # 0
    rec.invoke("dispatcher", "dispatch", {"job": "b"})  # 1
    rec.record_fault("inject", "r1", "redis", "restart_server", {})  # 2
    rec.record_fault("heal", "r1", "redis", "restart_server", {})  # 3
    rec.record_fault("inject", "d1", "a", "redispatch", {})  # 4: a sent again
    rec.record_fault("heal", "d1", "a", "redispatch", {})  # 5
    rec.observe(job_state("b", "queued"))  # 6
    rec.observe(job_state("a", "queued"))  # 7
    h = rec.history()
    restart, again = h.fault_spans()
    assert h.faults_active([1, 6]) == [restart, again]  # without a job: every fault in range
    assert h.faults_active([1, 6], job="b") == [restart]  # a's redispatch is not b's fault
    assert h.faults_active([0, 7], job="a") == [restart, again]
