"""Email retries: jobs send their email, then fail on their first attempt(s), with no fault
anywhere near the send.

Guards against the duplicate confirmation email: a notification or confirmation job whose
email step comes before a step that fails (Flarum's SendNotificationsJob, Laravel mail jobs
retried after a later step threw) sends the email again on every retry, so customers get two
or three copies although nothing about the first send was in doubt. Under the scenarios'
default guarantee (``once_unless_indeterminate``) a repeat is allowed only when the earlier
send was indeterminate; here none is, so every job must have sent exactly one email.
"""

from __future__ import annotations

import pytest

from harness.contract import db_write, email, fail, job
from harness.nemesis import plan

pytestmark = pytest.mark.jobchaos_needs("retries")  # the email is at risk only on a retry


def test_email_is_not_sent_again_when_a_later_step_fails(chaos, jobchaos_profile):
    p = jobchaos_profile
    # Half fail once after their email, half twice (the third of the three tries completes).
    jobs = [job(f"notify-{i}", db_write(), email(), fail(times=1 + i % 2))
            for i in range(p.jobs)]
    chaos.check(plan(p.workers, jobs))
