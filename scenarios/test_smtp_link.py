"""SMTP link: the mail link goes down, resets mid-session (after DATA the send's outcome is
unknown), or slows down.

Guards against the swallowed send error (an SMTP error logged, the job marked completed, the
email never sent) and against lost emails; duplicates are allowed only within the
at-least-once guarantee, and retries must respect the backoff.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from harness.contract import db_write, email, job
from harness.scenario import assert_valid

FAULTS: dict[str, Callable[[Any], Any]] = {
    "down": lambda link: link.down(),
    "reset_after_data": lambda link: link.reset_peer(timeout_ms=20),
    "slow": lambda link: link.latency(150),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_smtp_link_fault(chaos, jobchaos_profile, fault):
    chaos.start_workers(jobchaos_profile.workers)
    chaos.dispatch(*[job(f"mail-{fault}-{i}", db_write(), email())
                     for i in range(jobchaos_profile.jobs)])
    chaos.wait_for_attempts(1)
    with FAULTS[fault](chaos.faults.smtp):
        chaos.hold(chaos.policy.lease * 0.75)
    chaos.drain()
    assert_valid(chaos.finish(), chaos.render())
