"""The step vocabulary of docs/contract.md, run inside the job's child process.

``db_write`` goes through the worker's effects thread (see ``effects``); ``email`` opens the
child's own SMTP connection when first needed (the child never touches the worker's
connections: it shares their sockets). A step that fails raises; ``crash`` exits the process
at once with no cleanup, as a segfault or ``exit()`` in a job would.
"""

from __future__ import annotations

import contextlib
import smtplib
from collections.abc import Mapping
from typing import Any

from harness.contract import email_message
from harness.kit.steps import LocalSteps
from reference_worker.bugs import Bugs
from reference_worker.effects import Channel, EffectsClient
from reference_worker.log import log


class StepRunner(LocalSteps):
    """Runs the steps of one attempt of one job."""

    def __init__(self, *, job_id: str, attempt: int, worker: str, effects: Channel,
                 smtp_host: str, smtp_port: int, io_timeout: float, bugs: Bugs,
                 attempt_id: int | None = None) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.nth = attempt  # the reference worker counts every attempt
        self.attempt_id = attempt_id
        self.worker = worker
        self.channel = effects
        self.smtp_host = smtp_host
        self.smtp_port = smtp_port
        self.io_timeout = io_timeout
        self.bugs = bugs
        self._effects: EffectsClient | None = None
        self._smtp: smtplib.SMTP | None = None

    def run(self, steps: tuple[Mapping[str, Any], ...]) -> None:
        """In the child: run ``steps`` in order; the first failure raises."""
        self._effects = self.channel.child_side()
        try:
            for index, step in enumerate(steps):
                getattr(self, f"step_{step['op']}")(index, step)
        finally:
            self.close()

    def close(self) -> None:
        if self._smtp is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._smtp.quit()

    # -- the vocabulary -----------------------------------------------------------------
    def step_db_write(self, index: int, step: Mapping[str, Any]) -> None:
        assert self._effects is not None, "run() first"
        # Exactly once: the effect row and its dedupe key go in one transaction.
        idempotent = True
        if self.bugs.on("effects_not_idempotent"):
            # Origin: jobs that insert without an idempotency key (flarum SendNotificationsJob's
            # bulk insert): every retry writes the effect again.
            idempotent = False
        self._effects.db_write(index, idempotent=idempotent)

    def step_email(self, index: int, step: Mapping[str, Any]) -> None:
        assert self._effects is not None, "run() first"
        # Once unless indeterminate: skip a send an earlier attempt recorded as accepted.
        remember = True
        if self.bugs.on("email_every_retry"):
            # Origin: notification and confirmation jobs retried after a later step failed
            # send their email again on every try (Flarum's SendNotificationsJob and Laravel
            # mail jobs, background/002: duplicate delivery is tolerable under a lost
            # acknowledgement, not on every retry).
            remember = False
        if remember and self._effects.email_sent(index):
            log(f"{self.job_id} step {index}: email already sent; not sending it again")
            return
        self._send_email(index)
        if remember:
            # Right after the server accepted it: dying before this line is what makes the
            # send indeterminate, and only then may a retry send it again.
            self._effects.record_email(index)

    def _send_email(self, index: int) -> None:
        msg = email_message(self.job_id, index, attempt=self.attempt, attempt_id=self.attempt_id,
                            sender=f"{self.worker}@reference-worker.invalid")
        try:
            if self._smtp is None:
                self._smtp = smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=self.io_timeout)
            self._smtp.send_message(msg)
        except (smtplib.SMTPException, OSError) as exc:
            self._smtp = None
            if self.bugs.on("swallow_smtp_errors"):
                # Origin: mail code that catches and logs transport errors (the "completed
                # but no confirmation email" report in background/000): the job completes.
                log(f"{self.job_id} step {index}: email failed ({exc}); ignored")
                return
            raise

