"""Attempt rows that repeat an attempt number, written through real PostgreSQL, read back as
separate attempts: by the collectors after the run, and by the gauges while it runs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from harness.checkers import Backoff, Policy, Validity, check
from harness.collectors import match_outcomes, read_tables, table_observations
from harness.contract import Connections
from harness.history import ATTEMPT, DISPATCH, DISPATCHER, OBSERVER, PROBE, History
from harness.run.gauges import Gauges

W1 = "worker-1"


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def gauges(database_url: str) -> Iterator[Gauges]:
    g = Gauges(Connections("redis://unused", database_url, "127.0.0.1", 0, "unused"))
    yield g
    g.close()


def start(db: psycopg.Connection[Any], job: str = "j", n: int = 1, worker: str = W1,
          at: float | None = None) -> int:
    """An attempt row, as a worker that does not count redeliveries writes it: its id."""
    row = db.execute("INSERT INTO chaos_attempts (job_id, attempt, worker, started_at) VALUES "
                     "(%s, %s, %s, coalesce(to_timestamp(%s::float8), clock_timestamp())) "
                     "RETURNING id", (job, n, worker, at)).fetchone()
    assert row is not None
    return int(row[0])


def end(db: psycopg.Connection[Any], status: str, job: str = "j", n: int = 1,
        worker: str = W1, *, at: float | None = None, attempt_id: int | None = None) -> None:
    db.execute("INSERT INTO chaos_outcomes (job_id, attempt, worker, status, reason, at, "
               "attempt_id) VALUES (%s, %s, %s, %s, %s, "
               "coalesce(to_timestamp(%s::float8), clock_timestamp()), %s)",
               (job, n, worker, status, None if status == "completed" else "exception", at,
                attempt_id))


def stop(db: psycopg.Connection[Any], attempt_id: int) -> None:
    db.execute("UPDATE chaos_attempts SET stopped_at = clock_timestamp() WHERE id = %s",
               (attempt_id,))


def test_two_runs_numbered_1_read_back_as_two_attempts(db, gauges, database_url):
    first = start(db)
    assert [a["attempt_id"] for a in gauges.inflight()] == [first]
    end(db, "retrying")
    stop(db, first)
    assert gauges.inflight() == []
    again = start(db)  # redelivered, counted as attempt 1 again, on the same worker
    assert gauges.inflight() == [{"job": "j", "attempt": 1, "attempt_id": again, "worker": W1}]
    assert [(i, ended) for i, _, _, _, ended in gauges.attempts_of("j")] == [
        (first, True), (again, False)]
    end(db, "completed")
    stop(db, again)
    assert gauges.inflight() == []

    attempts = [o.value for o in table_observations(read_tables(database_url))
                if o.f == ATTEMPT]
    assert [(a["attempt_id"], a["status"]) for a in attempts] == [
        (first, "retrying"), (again, "completed")]
    assert attempts[0]["stopped"] < attempts[1]["at"] < attempts[1]["stopped"]

    history = [("invoke", DISPATCHER, DISPATCH, {"job": "j", "steps": []}),
               ("ok", DISPATCHER, DISPATCH, {"job": "j"}), ("ok", OBSERVER, PROBE,
                                                           {"available": True})]
    history += [("ok", OBSERVER, o.f, o.value)
                for o in table_observations(read_tables(database_url))]
    result = check(History.from_ops([(*op, k, 1000.0 + k) for k, op in enumerate(history)]),
                   Policy(backoff=Backoff(base=0.0)))
    assert result.validity is Validity.VALID, result.anomalies


# Rows as (kind, job, number, worker, time, attempt id the outcome names): the gauges' SQL
# and the collectors must agree on which attempts no outcome ended.
CASES = {
    "sequential": [("a", 1, 10.0), ("o", 1, 10.5), ("a", 1, 11.0), ("o", 1, 11.5),
                   ("a", 1, 12.0)],
    "concurrent": [("a", 1, 10.0), ("a", 1, 10.2), ("o", 1, 10.5), ("a", 1, 10.6),
                   ("o", 1, 10.7)],
    "an outcome before its attempt": [("o", 1, 9.0), ("a", 1, 10.0), ("o", 2, 10.5)],
    "named": [("a", 1, 10.0), ("a", 1, 10.2), ("o", 1, 10.5, 0), ("a", 2, 10.6),
              ("o", 1, 10.7)],
}


@pytest.mark.parametrize("case", CASES)
def test_the_gauges_end_the_attempts_the_collectors_end(db, gauges, database_url, case):
    ids: list[int] = []
    for kind, n, at, *named in CASES[case]:
        if kind == "a":
            ids.append(start(db, n=n, at=at))
        else:
            end(db, "retrying", n=n, at=at, attempt_id=ids[named[0]] if named else None)
    rows = read_tables(database_url)
    ended = set(match_outcomes(rows.attempts, rows.outcomes))
    assert {a["attempt_id"] for a in gauges.inflight()} == set(ids) - ended
    assert {i for i, *_, done in gauges.attempts_of("j") if not done} == set(ids) - ended
