"""The retry policy: how a failed attempt ends (retrying or dead) and when it runs again."""

from __future__ import annotations

import random

from harness.contract import BACKOFF_JITTER, Policy
from reference_worker.bugs import Bugs
from reference_worker.ledger import Outcome


def failed(policy: Policy, attempt: int, reason: str, detail: str, bugs: Bugs) -> Outcome:
    """The outcome of failed attempt ``attempt``: retrying while tries remain, else dead."""
    tries_left = attempt < policy.max_tries
    if bugs.on("unbounded_retries"):
        # Origin: `queue:work --tries=0` (the default on some hosts, e.g. Vapor before
        # vapor-core 2.4.1): jobs with no retry config retry forever (background/002).
        tries_left = True
    return Outcome("retrying" if tries_left else "dead", reason, detail)


def delay(policy: Policy, attempt: int, bugs: Bugs) -> float:
    """Seconds before the retry that follows failed attempt ``attempt``: the policy's
    exponential backoff with its cap, shortened by a random jitter of at most BACKOFF_JITTER."""
    if bugs.on("no_backoff"):
        # Origin: Laravel's default backoff of 0 s: "three retries fire back-to-back at
        # worker speed", hammering the server that just blipped (background/002).
        return 0.0
    return policy.backoff(attempt) * (1.0 - BACKOFF_JITTER * random.random())
