"""The reaper: gives the jobs of vanished workers back, or dead-letters them.

Every worker runs it every ``lease / 4`` seconds; it is idempotent, so several reapers may look
at the same expired lease. For each lease that expired (its worker stopped heartbeating: it
was killed, or is cut off), the outcome ``lease_lost`` is first recorded in PostgreSQL; only
then is the Redis state changed, so a reaper that dies in between leaves a lease that the next
reaper handles the same way. If the owner recorded an outcome before it died, that one stands.
"""

from __future__ import annotations

from typing import Any

import psycopg

from harness.contract import Policy
from reference_worker import ledger, retries
from reference_worker.bugs import Bugs
from reference_worker.links import Link
from reference_worker.log import log
from reference_worker.registry import Disposition, Registry

DISPOSITION: dict[str, Disposition] = {"completed": "done", "retrying": "retry", "dead": "dead"}


class Reaper:
    def __init__(self, registry: Registry, db: Link[psycopg.Connection[Any]], policy: Policy,
                 worker: str, bugs: Bugs) -> None:
        self.registry = registry
        self.db = db
        self.policy = policy
        self.worker = worker
        self.bugs = bugs

    def run_once(self) -> int:
        """Reclaim every expired lease; return how many. Link errors propagate."""
        reclaimed = 0
        for lease in self.registry.expired():
            owner, attempt = lease.owner
            failure = retries.failed(self.policy, attempt, "lease_lost",
                                     f"lease of {owner} expired; reclaimed by {self.worker}",
                                     self.bugs)
            if self.bugs.on("reclaim_not_counted"):
                # Origin: Sidekiq Pro's super_fetch pushed the jobs of a crashed process back
                # to the queue without counting the crash, so a job that crashes its process
                # ran again and again (sidekiq/sidekiq#3400) until recoveries were counted,
                # 3 in 72 hours, then dead (sidekiq/sidekiq#4633).
                failure = ledger.Outcome("retrying", failure.reason, failure.detail)

            def record(conn: psycopg.Connection[Any], job: str = lease.job_id, n: int = attempt,
                       worker: str = owner, outcome: ledger.Outcome = failure) -> ledger.Outcome:
                return ledger.end_attempt(conn, job, n, worker, outcome)

            stands = self.db.run(record)
            disposition = DISPOSITION[stands.status]
            settled = self.registry.settle(
                lease.job_id, lease.token, disposition, payload=lease.payload, attempt=attempt,
                delay=retries.delay(self.policy, attempt, self.bugs),
                dead={"reason": stands.reason, "detail": stands.detail, "attempt": attempt,
                      "payload": lease.payload})
            if settled:
                reclaimed += 1
                log(f"reaper: {lease.job_id} attempt {attempt} of {owner}: lease expired -> "
                    f"{stands.status}" + (f" ({stands.reason})" if stands.reason else ""))
        return reclaimed
