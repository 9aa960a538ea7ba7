"""Did the worker enforce its job timeout? Cost: O(n + faults).

- ``overran``: an attempt that ran longer than ``policy.timeout_bound_s`` (the timeout the
  worker enforces, ``job_timeout`` rounded up to ``timeout_granularity``, plus
  ``timeout_slack``): from its start (``at``) to when its process stopped (``stopped``), or,
  when no stop was recorded, to its outcome row (``ended``), unless a reaper wrote that
  (``lease_lost``: the reaper's clock, not the attempt's). A worker whose timeout does not
  fire lets a hung job hold its slot (and its lease, its locks) for as long as it hangs.

Not judged (counted as ``durations_unjudged``): attempts with no end known, and attempts
during which a fault was active anywhere: a frozen worker, a slow link or a restarting server
holds up the attempt or its records, not the worker's timeout. The scenario that guards the
timeout (scenarios/test_timeout.py) runs with no fault.
"""

from __future__ import annotations

from harness.checkers.facts import facts
from harness.checkers.findings import Findings
from harness.checkers.model import CheckResult
from harness.checkers.policy import Policy
from harness.history import History

NAME = "timeouts"
KINDS = ("overran",)
NOT_FAULTS = frozenset({"redispatch", "kill_job"})  # events that hold no attempt up


def check_timeouts(history: History, policy: Policy) -> CheckResult:
    fx = facts(history)
    out = Findings(NAME, policy, fx, KINDS)
    spans = [(s.start, s.end if s.end is not None else float("inf"))
             for s in history.fault_spans() if s.kind not in NOT_FAULTS]
    bound, values = policy.timeout_bound_s, history.values
    judged = unjudged = 0
    for i, c in zip(*fx.attempt_ops, strict=True):
        v = values[i]
        start, end = v.get("at"), _end(v)
        if not isinstance(start, int | float) or end is None:
            unjudged += 1
            continue
        if any(lo <= end and hi >= start for lo, hi in spans):
            unjudged += 1
            continue
        judged += 1
        took = end - start
        if took > bound:
            how = "stopped" if isinstance(v.get("stopped"), int | float) else "ended"
            out.add("overran", c,
                    f"attempt {v.get('attempt', '?')} ({v.get('worker', '?')}) ran "
                    f"{took:.2f} s (start to {how}); the worker's timeout is "
                    f"{policy.enforced_timeout_s:g} s (+{policy.timeout_slack:g} s allowed to "
                    "start, kill and reap the job): the timeout was not enforced", [i])
    return out.result(durations_judged=judged, durations_unjudged=unjudged)


def _end(v: dict[str, object]) -> float | None:
    """When the attempt stopped: its recorded stop, else its outcome row unless a reaper
    wrote it."""
    stopped = v.get("stopped")
    if isinstance(stopped, int | float):
        return float(stopped)
    ended = v.get("ended")
    if isinstance(ended, int | float) and v.get("reason") != "lease_lost":
        return float(ended)
    return None
