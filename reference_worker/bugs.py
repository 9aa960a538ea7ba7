"""Named bug switches: small, deliberate deviations that re-create real failures.

``REFERENCE_WORKER_BUGS=name,name`` turns them on. Every deviation in the code is one
``if bugs.on("name"):`` branch with a comment naming where the failure was seen in the wild;
``reference_worker/BUGS.md`` documents each one. Unknown names are an error, so a typo can never
leave a scenario running against a correct worker while believing it runs a broken one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

ENV_BUGS: Final = "REFERENCE_WORKER_BUGS"

# name -> the wrong behaviour it turns on (the origin of each is in BUGS.md)
BUGS: Final[Mapping[str, str]] = MappingProxyType({
    "ack_early": "pop the job and process it with no lease: a crash mid-job loses it",
    "no_reaper": "never reclaim expired leases: a dead worker's jobs stay in flight forever",
    "timeout_skips_failed_hook": "on timeout, kill the job but record nothing: it vanishes",
    "timeout_not_enforced": "never kill a job on timeout: a hung job runs as long as it hangs",
    "memory_kill_unrecorded": "on a memory kill, record nothing: the job vanishes",
    "effects_not_idempotent": "db_write without the dedupe key: a retry writes the effect again",
    "status_before_effects": "record 'completed' before running the steps",
    "unbounded_retries": "ignore max_tries: a failing job is retried forever",
    "no_backoff": "retry at once, without the backoff delay",
    "lock_never_expires": "take uniqueness locks without a TTL: a dead holder keeps them forever",
    "swallow_smtp_errors": "log an SMTP error and carry on: the job completes, no email",
    "lease_shorter_than_timeout": "lease = job_timeout / 2 and no heartbeat: a running job is "
                                  "handed to a second worker",
    "no_dedupe": "run a duplicate dispatch of a job id again",
    "stop_consuming_after_link_error": "after a fetch fails on a link error, never fetch "
                                       "again: the process stays up, idle",
    "exit_on_link_error": "the main process exits when its Redis link fails (fetching or "
                          "settling), leaving the restart to its supervisor",
    "shutdown_drops_job": "no SIGTERM handler: the worker dies at once with the job in hand",
    "shutdown_ignores_grace": "a warm shutdown waits for the job in flight however long it "
                              "takes, past the shutdown grace",
    "reclaim_not_counted": "a job reclaimed from a dead worker is retried without counting that "
                           "attempt: a job that kills its worker is retried forever",
    "zombie_worker": "back from a pause or a cut, record the outcome and settle without "
                     "checking the lease is still ours: a job another worker reran is completed "
                     "twice, or a finished job is put back on the queue",
    "no_lease_restore": "a lease Redis forgot (a restart) counts as lost and the job's settle "
                        "is refused: the attempt is abandoned and the job never handed back",
    "email_every_retry": "keep no record of sent emails: every retry sends the email again",
})


class UnknownBugError(ValueError):
    """``REFERENCE_WORKER_BUGS`` names a switch that does not exist."""


@dataclass(frozen=True, slots=True)
class Bugs:
    """The set of switches turned on (empty: the correct worker)."""

    enabled: frozenset[str] = frozenset()

    def on(self, name: str) -> bool:
        if name not in BUGS:  # a typo in the worker's own code must not read as "off"
            raise KeyError(f"no bug switch named {name!r}")
        return name in self.enabled

    def __str__(self) -> str:
        return ",".join(sorted(self.enabled)) or "none"


def parse(value: str | None) -> Bugs:
    """Parse ``name,name``; whitespace and empty items are ignored."""
    names = {part.strip() for part in (value or "").split(",") if part.strip()}
    unknown = sorted(names - BUGS.keys())
    if unknown:
        raise UnknownBugError(
            f"unknown bug switch{'es' if len(unknown) > 1 else ''} {', '.join(unknown)} in "
            f"{ENV_BUGS}; valid names: {', '.join(BUGS)}"
        )
    return Bugs(frozenset(names))
