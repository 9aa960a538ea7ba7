"""Which process a ready row belongs to, and the supervisor's restart backoff."""

from __future__ import annotations

from harness.run.supervisor import BACKOFF_CAP, backoff
from harness.services.readiness import CLOCK_SLACK, ReadyRow, assign, owner
from harness.services.workers import Life


def two_lives() -> list[Life]:
    """A process killed at 10.0 and the one started after it at 10.2, still running."""
    return [Life(pid=11, started=0.0, ended=10.0, code=-9), Life(pid=22, started=10.2)]


def test_a_row_belongs_to_the_process_it_names():
    first, second = two_lives()
    assert owner(ReadyRow("worker-1", 22, 10.1), [first, second]) is second
    assert owner(ReadyRow("worker-1", 11, 10.3), [first, second]) is first


def test_without_a_known_pid_a_row_belongs_to_the_process_running_when_it_was_written():
    first, second = two_lives()
    lives = [first, second]
    assert owner(ReadyRow("worker-1", None, 0.5), lives) is first
    assert owner(ReadyRow("worker-1", 999, 10.5), lives) is second  # a shim's other process
    # Between the two (the database's clock a little off): the nearest one within the slack.
    assert owner(ReadyRow("worker-1", None, 10.0 + CLOCK_SLACK / 2), lives) is first
    assert owner(ReadyRow("worker-1", None, -CLOCK_SLACK * 2), lives) is None


def test_each_life_gets_the_earliest_of_its_own_rows():
    lives = two_lives()
    assign("worker-1", lives, [ReadyRow("worker-2", 22, 10.4), ReadyRow("worker-1", 11, 0.7),
                               ReadyRow("worker-1", 11, 0.5), ReadyRow("worker-1", 22, 11.0)])
    assert [life.ready for life in lives] == [0.5, 11.0]


def test_the_restart_backoff_doubles_up_to_its_cap():
    assert [backoff(n) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.6, BACKOFF_CAP]
    assert backoff(50) == BACKOFF_CAP == 2.0
