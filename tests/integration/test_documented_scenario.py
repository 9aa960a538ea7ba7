"""A scenario written only with the API docs/writing-scenarios.md documents: the ``chaos``
fixture, the nemesis vocabulary, ``chaos.tune`` and ``chaos.check``. If this breaks, the page
is wrong."""

from __future__ import annotations

from harness.contract import db_write, email, fail, job, sleep
from harness.nemesis import after, dispatch, kill, link_fault, pause, plan, redispatch


def test_a_scenario_written_from_the_docs(chaos, jobchaos_profile):
    chaos.tune(guarantees={"email": "exactly_once"})
    lease = chaos.policy.lease
    jobs = [job(f"doc-{i}", db_write(), sleep(0.1), email()) for i in range(4)]
    late = job("doc-late", db_write())
    flaky = job("doc-flaky", fail(times=1), db_write())
    chaos.check(plan(2, [*jobs, late, flaky],
                     kill("busy", after(effects=1)),
                     pause(0, after(effects=2), seconds=lease / 4),
                     link_fault("latency", "redis", after(attempts=3), seconds=lease / 2, ms=50),
                     redispatch("doc-0", after(finished=2)),
                     dispatch("doc-late", after(at=lease))))
