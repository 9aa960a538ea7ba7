"""SMTP link: the mail link goes down, resets mid-session (after DATA the send's outcome is
unknown), or slows down.

Guards against the swallowed send error (an SMTP error logged, the job marked completed, the
email never sent) and against lost emails; an email may be sent again only after a send the
fault made indeterminate (the verdict names the fault), and retries must respect the backoff.
"""

from __future__ import annotations

import pytest

from harness.contract import db_write, email, job
from harness.nemesis import after, link_fault, plan

FAULTS = {
    "down": ("down", {}),
    "reset_after_data": ("reset_peer", {"timeout_ms": 20}),
    "slow": ("latency", {"ms": 150}),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_smtp_link_fault(chaos, jobchaos_profile, fault):
    p = jobchaos_profile
    kind, params = FAULTS[fault]
    jobs = [job(f"mail-{fault}-{i}", db_write(), email()) for i in range(p.jobs)]
    cut = link_fault(kind, "smtp", after(attempts=1), seconds=chaos.policy.lease * 0.75,
                     **params)
    chaos.check(plan(p.workers, jobs, cut))
