"""The drain's decisions, with scripted readings: with a probe it ends only on the probe's
answer (not the queue list), asks it at most every PROBE_EVERY s, never while jobs are
unfinished and an attempt is working, and records why an answer failed."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

from harness import history as h
from harness.run.drain import PROBE_EVERY, SETTLE, drain


class Readings:
    """Gauges whose terminal jobs and probe answers follow scripts over time (seconds since
    the start); ``held`` is None for a probe that fails."""

    def __init__(self, terminal: Callable[[float], set[str]],
                 held: Callable[[float], int | None] | None) -> None:
        self.start = time.monotonic()
        self.terminal = terminal
        self.held = held
        self.asked: list[float] = []

    @property
    def probing(self) -> bool:
        return self.held is not None

    def now(self) -> float:
        return time.monotonic() - self.start

    def terminal_jobs(self) -> set[str]:
        return self.terminal(self.now())

    def queued(self, jobs: Collection[str]) -> int:
        assert self.held is not None, "the list is read only without a probe"
        self.asked.append(self.now())
        answer = self.held(self.now())
        if answer is None:
            raise RuntimeError("probe exited 1: cannot reach Redis")
        return answer


def _drain(readings: Readings, deadline: float,
           working: Callable[[], bool] = lambda: False) -> tuple[bool, dict[str, object]]:
    recorder = h.Recorder()
    done = drain(readings, lambda: None, {"a", "b"}, recorder, deadline,  # type: ignore[arg-type]
                 working=working)
    [end] = [op for op in recorder.history().ops(h.DRAIN) if op.type != "invoke"]
    return done, dict(end.value)


def test_all_terminal_still_waits_while_the_probe_finds_a_copy():
    readings = Readings(lambda t: {"a", "b"}, lambda t: 1 if t < 1.2 else 0)
    done, value = _drain(readings, deadline=5.0)
    assert done and value == {"pending": 0, "queued": 0}
    assert 1.2 <= readings.now() < 1.2 + PROBE_EVERY + 0.3
    gaps = [b - a for a, b in zip(readings.asked, readings.asked[1:], strict=False)]
    assert gaps and min(gaps) >= PROBE_EVERY - 0.01, readings.asked


def test_the_probe_is_asked_once_everything_is_terminal_even_while_working():
    readings = Readings(lambda t: {"a", "b"} if t > 0.3 else {"a"}, lambda t: 0)
    done, _ = _drain(readings, deadline=5.0, working=lambda: True)
    assert done and len(readings.asked) == 1 and readings.asked[0] >= 0.3


def test_unfinished_jobs_are_not_probed_while_an_attempt_works():
    readings = Readings(lambda t: set(), lambda t: 0)
    done, value = _drain(readings, deadline=1.5, working=lambda: True)
    assert not done and readings.asked == []
    assert value == {"pending": 2, "queued": -1, "jobs": ["a", "b"]}


def test_none_held_twice_a_settle_apart_ends_early():
    readings = Readings(lambda t: {"a"}, lambda t: 0)
    done, value = _drain(readings, deadline=10.0)
    assert not done and value["ended"] == "the worker's system holds none of them"
    assert SETTLE <= readings.now() < SETTLE + PROBE_EVERY + 0.3


def test_a_failing_probe_never_ends_the_drain_and_says_why():
    readings = Readings(lambda t: {"a", "b"}, lambda t: None)
    done, value = _drain(readings, deadline=1.2)
    assert not done and readings.now() >= 1.2
    assert value == {"pending": 0, "queued": -1, "jobs": [],
                     "probe": "probe exited 1: cannot reach Redis"}


class Listed(Readings):
    def __init__(self, terminal: Callable[[float], set[str]], listed: int) -> None:
        super().__init__(terminal, None)
        self.listed = listed

    def queued(self, jobs: Collection[str]) -> int:
        self.asked.append(self.now())
        return self.listed


def test_without_a_probe_the_queue_list_decides():
    readings = Listed(lambda t: {"a", "b"}, listed=1)
    done, value = _drain(readings, deadline=0.3)
    assert not done and value["queued"] == 1
    readings = Listed(lambda t: {"a", "b"}, listed=0)
    assert _drain(readings, deadline=5.0) == (True, {"pending": 0, "queued": 0})


def test_the_probe_runs_with_the_direct_urls_and_the_report_url(tmp_path):
    import json
    import sys
    from types import SimpleNamespace

    from harness.contract import Connections
    from harness.run.drain import probe_of
    from harness.run.policy import SCENARIO_POLICY

    seen = tmp_path / "env.json"
    argv = [sys.executable, "-c", "import json, os, sys; json.dump({k: v for k, v in "
            "os.environ.items() if k.startswith(('CHAOS_', 'EXTRA'))}, open(sys.argv[1], 'w'));"
            " print('{\"scheduled\": [\"a\"]}')", str(seen)]
    direct = Connections("redis://127.0.0.1:7/3", "postgresql://h:5/db", "127.0.0.1", 25, "q")
    world = SimpleNamespace(direct=direct, worker=SimpleNamespace(probe_argv=argv,
                                                                  env={"EXTRA": "1"}))
    probe = probe_of(world, lambda: SCENARIO_POLICY.tuned(lease=4.0))  # type: ignore[arg-type]
    assert probe is not None and probe().scheduled == ("a",)
    env = json.loads(seen.read_text())
    assert (env["CHAOS_REDIS_URL"], env["CHAOS_DATABASE_URL"], env["CHAOS_REPORT_DATABASE_URL"],
            env["CHAOS_QUEUE"], env["CHAOS_WORKER_ID"], env["CHAOS_LEASE"], env["EXTRA"]) == (
        direct.redis_url, direct.database_url, direct.database_url, "q", "probe", "4.0", "1")
