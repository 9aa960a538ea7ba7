"""Dispatch plugins (``--jobchaos-dispatcher module:callable``) in real scenario runs with the
reference worker: the history records how each dispatch ended (returned: ``ok``, raised
``NotEnqueued``: ``fail``, raised anything else: ``info``), a dispatch through the proxy hands
the plugin proxied connections, and the drain waits for what the worker's system holds
outside the queue list (a plugin never fills that list)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

WORKERS = Path(__file__).parent / "workers"  # chaos_dispatchers.py


def _run(pytester: pytest.Pytester, dispatcher: str, test: str) -> pytest.RunResult:
    pytester.makeini(f"[pytest]\npythonpath = {WORKERS}\n")
    pytester.makepyfile(test)
    return pytester.runpytest_subprocess("-p", "no:xdist", "-p", "no:cacheprovider",
                                         f"--jobchaos-dispatcher=chaos_dispatchers:{dispatcher}")


def test_the_history_records_what_the_plugin_returned_or_raised(pytester: pytest.Pytester):
    result = _run(pytester, "by_name", """
        import chaos_dispatchers
        from harness import history as h
        from harness.contract import db_write, job
        from harness.nemesis import dispatch, plan

        def test_plugin(chaos):
            jobs = [job("fine-1", db_write()), job("refused-1", db_write()),
                    job("lost-reply-1", db_write()), job("fine-2", db_write())]
            judgement = chaos.check(plan(1, jobs, dispatch("fine-2", through_proxy=True)))
            ended = {op.value["job"]: (op.type, op.value.get("error"))
                     for op in judgement.history.ops(h.DISPATCH) if op.type != "invoke"}
            assert ended == {
                "fine-1": ("ok", None), "fine-2": ("ok", None),
                "refused-1": ("fail", "refused-1: the broker refused the connection"),
                "lost-reply-1": ("info", "TimeoutError: lost-reply-1: no reply from the broker")}
            ran = {op.value["job"] for op in judgement.history.ops(h.ATTEMPT)}
            assert ran == {"fine-1", "fine-2", "lost-reply-1"}
            # lost-reply-1 ran after all: information, not a failure.
            assert [(a.kind, a.job) for a in judgement.result.anomalies] == [
                ("recovered", "lost-reply-1")]
            # Each dispatch got the run's policy and queue; the one through the proxy got
            # the proxied connections, as both its direct and its proxied.
            seen = {c.direct.redis_url for c in chaos_dispatchers.SEEN}
            assert seen == {chaos.world.direct.redis_url, chaos.world.proxied.redis_url}
            last = chaos_dispatchers.SEEN[-1]
            assert last.direct == last.proxied == chaos.world.proxied
            assert {c.queue for c in chaos_dispatchers.SEEN} == {chaos.world.direct.queue}
            assert all(c.policy == chaos.policy for c in chaos_dispatchers.SEEN)
        """)
    result.assert_outcomes(passed=1)


def test_the_drain_waits_for_jobs_the_probe_finds_outside_the_queue_list(
        pytester: pytest.Pytester):
    """Every job waits ``DELAY`` s in the reference worker's scheduled set (``enqueue_in``).
    After ``a`` finished, it is dispatched again: the copy is scheduled, the list is empty.
    A drain that looked only at the list would stop the workers at once and the probe would
    find ``a`` scheduled after it completed (a false ``regressed``); the drain asks the probe
    and waits until the worker dropped the duplicate."""
    result = _run(pytester, "later", """
        from harness import history as h
        from harness.contract import db_write, job
        from harness.nemesis import after, plan, redispatch

        def test_plugin(chaos):
            judgement = chaos.check(plan(1, [job("a", db_write())],
                                         redispatch("a", after(finished=1))))
            [drained] = [op for op in judgement.history.ops(h.DRAIN) if op.type != "invoke"]
            assert (drained.type, drained.value) == ("ok", {"pending": 0, "queued": 0})
            assert [op.value["state"] for op in judgement.history.ops(h.STATE)] == []
        """)
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(("spec", "expected"), [
    ("chaos_dispatchers", "expected module:callable, e.g. myapp.chaos_dispatch:enqueue"),
    ("no_such_module:enqueue", "no module named 'no_such_module' on the import path"),
    ("chaos_dispatchers:nope", "chaos_dispatchers has no attribute 'nope' (module "
                               "chaos_dispatchers: {workers}/chaos_dispatchers.py)"),
    ("chaos_dispatchers:DELAY", "chaos_dispatchers:DELAY is a float, not a callable"),
    ("broken_dispatcher:enqueue", "importing 'broken_dispatcher' failed: ModuleNotFoundError: "
                                  "No module named 'a_library_not_installed' at "),
])
def test_a_dispatcher_that_cannot_be_used_is_one_usage_error(pytester: pytest.Pytester,
                                                             spec: str, expected: str):
    pytester.makepyfile(broken_dispatcher="import a_library_not_installed\n")
    pytester.makeini(f"[pytest]\npythonpath = {WORKERS} .\n")
    pytester.makepyfile("\n".join(f"def test_{i}(chaos): pass" for i in range(3)))
    started = time.monotonic()
    result = pytester.runpytest_subprocess("-p", "no:xdist", "-p", "no:cacheprovider",
                                           f"--jobchaos-dispatcher={spec}")
    assert time.monotonic() - started < 10
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    out = result.stdout.str() + result.stderr.str()
    assert out.count("Fix:") == 1 and "Traceback" not in out, out
    assert f"dispatcher: {spec!r} (from --jobchaos-dispatcher)" in out, out
    assert expected.format(workers=WORKERS) in out, out
    assert "Fix: set --jobchaos-dispatcher / JOBCHAOS_DISPATCHER / ini jobchaos_dispatcher" in out
