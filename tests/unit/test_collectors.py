"""Collectors map contract rows, sink messages and probe answers onto history observations."""

from __future__ import annotations

from harness import contract
from harness import history as h
from harness.collectors import (
    AttemptRow,
    EffectRow,
    OutcomeRow,
    TableRows,
    message_observations,
    probe_observations,
    table_observations,
)
from harness.contract import Dead, Lease, Lock, ProbeState
from harness.services.smtp import SinkMessage


def test_tables_become_effects_outcomes_and_attempts():
    rows = TableRows(
        attempts=[AttemptRow(1, "j1", 1, "worker-1", 10.0), AttemptRow(2, "j1", 2, "worker-2", 11.0),
                  AttemptRow(3, "j2", 1, "worker-1", 12.0)],
        effects=[EffectRow("j1", 0, 7, 11.5, attempt_id=2)],
        outcomes=[OutcomeRow("j1", 1, "worker-1", "retrying", "timeout", 10.9),
                  OutcomeRow("j1", 2, "worker-2", "completed", None, 11.6),
                  OutcomeRow("j2", 1, "worker-1", "dead", "exception", 12.5)],
    )
    assert table_observations(rows) == [
        h.effect_row("j1", 0, ref=7, at=11.5, attempt_id=2),
        h.reported_outcome("j1", "retrying", reason="timeout", attempt=1, worker="worker-1",
                           at=10.9, attempt_id=1),
        h.reported_outcome("j1", "completed", attempt=2, worker="worker-2", at=11.6,
                           attempt_id=2),
        h.reported_outcome("j2", "dead", reason="exception", attempt=1, worker="worker-1",
                           at=12.5, attempt_id=3),
        h.attempt_record("j1", at=10.0, attempt=1, attempt_id=1, worker="worker-1", ended=10.9,
                         status="retrying", reason="timeout"),
        h.attempt_record("j1", at=11.0, attempt=2, attempt_id=2, worker="worker-2", ended=11.6,
                         status="completed"),
        h.attempt_record("j2", at=12.0, attempt=1, attempt_id=3, worker="worker-1", ended=12.5,
                         status="dead", reason="exception"),
    ]


def test_every_status_and_reason_is_the_contracts():
    rows = TableRows(attempts=[], effects=[], outcomes=[
        OutcomeRow("j", n, "worker-1", status, None if status == "completed" else reason, 1.0)
        for n, (status, reason) in enumerate(
            (s, r) for s in contract.OUTCOME_STATUSES for r in contract.FAILURE_REASONS)])
    statuses = {o.value["status"] for o in table_observations(rows)}
    assert statuses == set(contract.OUTCOME_STATUSES) == {"completed", "retrying", "dead"}


def test_a_row_written_after_a_completion_is_seen():
    # A reaper's lease_lost row for an attempt that had completed: every row is an outcome op,
    # so the checkers can see a finished job handed out again.
    rows = TableRows(attempts=[AttemptRow(1, "j", 1, "worker-1", 1.0)], effects=[], outcomes=[
        OutcomeRow("j", 1, "worker-1", "completed", None, 2.0),
        OutcomeRow("j", 2, "worker-2", "retrying", "lease_lost", 3.0)])
    outcomes = [o.value for o in table_observations(rows) if o.f == h.OUTCOME]
    assert [(v["status"], v.get("reason")) for v in outcomes] == [
        ("completed", None), ("retrying", "lease_lost")]


def test_attempt_without_outcome_has_no_end():
    rows = TableRows(attempts=[AttemptRow(9, "j9", 1, "worker-1", 5.0)], effects=[], outcomes=[])
    assert table_observations(rows) == [h.attempt_record("j9", at=5.0, attempt=1, attempt_id=9,
                                                         worker="worker-1")]


def _msg(seq: int, job: str | None, step: str | None) -> SinkMessage:
    return SinkMessage(seq=seq, received_at=100.0 + seq, mail_from="a@x", rcpt_tos=("b@y",),
                       headers=(), job=job, step=step, subject=None, size=10)


def test_only_tagged_messages_are_effects():
    obs = message_observations([_msg(0, "j1", "1"), _msg(1, None, None), _msg(2, "j1", "x")])
    assert obs == [h.sink_message("j1", 1, ref="0", at=100.0)]


def test_a_message_carries_the_attempt_it_was_tagged_with():
    tagged = [SinkMessage(seq=n, received_at=100.0, mail_from="a@x", rcpt_tos=("b@y",),
                          headers=(("X-Chaos-Attempt", tag),), job="j1", step="0", subject=None,
                          size=10) for n, tag in enumerate(["2", "x", "0"])]
    assert message_observations(tagged) == [
        h.sink_message("j1", 0, ref="0", at=100.0, attempt=2),
        h.sink_message("j1", 0, ref="1", at=100.0),  # not a number: no attempt
        h.sink_message("j1", 0, ref="2", at=100.0),  # attempts count from 1
    ]


def test_a_message_carries_the_identity_of_the_attempt_it_was_tagged_with():
    tagged = [SinkMessage(seq=n, received_at=100.0, mail_from="a@x", rcpt_tos=("b@y",),
                          headers=(("X-Chaos-Attempt", "1"), ("X-Chaos-Attempt-Id", tag)),
                          job="j1", step="0", subject=None, size=10)
              for n, tag in enumerate(["17", "x"])]
    assert message_observations(tagged) == [
        h.sink_message("j1", 0, ref="0", at=100.0, attempt=1, attempt_id=17),
        h.sink_message("j1", 0, ref="1", at=100.0, attempt=1),  # not an id: none
    ]


def test_probe_answer_and_missing_probe():
    state = ProbeState(queued=("a",), scheduled=("b",), leased=(Lease("c", "worker-1", 1.5),),
                       dead=(Dead("d", "timeout"), Dead("f", "unknown")),
                       locks=(Lock("k", None, "e"),))
    assert probe_observations(state) == [
        h.probe_status(True), h.job_state("a", "queued"), h.job_state("b", "scheduled"),
        h.job_state("c", "leased", worker="worker-1"), h.job_state("d", "dead", reason="timeout"),
        # A reason outside the contract's words is kept, as detail.
        h.job_state("f", "dead", detail="unknown"),
        h.lock_held("k", ttl=None, job="e"),
    ]
    assert probe_observations(None, "probe crashed") == [h.probe_status(False, "probe crashed")]
    assert ProbeState.from_json(state.to_json()) == state
