"""Did every lock expire within its bound? Cost: O(locks held at the probe).

The probe lists the uniqueness and overlap locks still held after the drain, with the seconds
each has left (``ttl``, None = never expires) and, when known, its age. A lock is leaked when
it never expires, or will live, or has lived, longer than ``policy.lock_bound_s``: once its
holder dies, nothing else would ever free it in time.
"""

from __future__ import annotations

from harness.checkers.facts import facts
from harness.checkers.findings import Findings
from harness.checkers.model import CheckResult
from harness.checkers.policy import Policy
from harness.history import ATTEMPT, LOCK, OUTCOME, History

NAME = "locks"
KINDS = ("lock_leaked",)


def check_locks(history: History, policy: Policy) -> CheckResult:
    fx = facts(history)
    out = Findings(NAME, policy, fx, KINDS)
    bound = policy.lock_bound_s
    held = history.indices(LOCK)
    for i in held:
        v = history.values[i]
        ttl, age = v.get("ttl"), v.get("age")
        if ttl is None:
            why = "never expires"
        elif ttl > bound:
            why = f"expires in {ttl:.3f} s, beyond the {bound:.3f} s bound"
        elif age is not None and age > bound:
            why = f"held for {age:.3f} s, beyond the {bound:.3f} s bound"
        else:
            continue
        c = history.codes[i]
        holder = f" (held by {v['holder']})" if v.get("holder") else ""
        state = ""
        if c >= 0:
            state = ("; its job completed" if fx.is_completed(c) else
                     "; its job is dead" if c in fx.reported_dead or c in fx.dead_lettered else
                     "; its job has no outcome")
        out.add("lock_leaked", c if c >= 0 else None, f"lock {v.get('key')!r}{holder} {why}"
                f"{state}", [i], evidence=(OUTCOME, ATTEMPT))
    available = fx.probe[0]
    undecided = None
    if not available and fx.dispatch.invoked:
        undecided = "no probe: locks held cannot be seen"
    return out.result(undecided=undecided, locks_held=len(held))
