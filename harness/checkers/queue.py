"""Did every dispatched job reach a terminal outcome? (Jepsen's ``total-queue``, for jobs.)

A job is *in the system* when its dispatch was acknowledged (``ok``), or when the dispatch was
indeterminate (``info``, or never completed) but the job ran. Its *terminal outcome* is a
reported outcome (``completed`` or ``dead``) or a dead-letter entry found by the probe. Cost: O(n).
"""

from __future__ import annotations

from harness.checkers.facts import Facts, facts
from harness.checkers.findings import Findings
from harness.checkers.jobmaps import job_map
from harness.checkers.model import CheckResult
from harness.checkers.policy import Policy
from harness.history import ATTEMPT, DISPATCH, EFFECT, LOCK, OUTCOME, STATE, History

NAME = "queue"
KINDS = ("lost", "stuck", "unresolved", "unexpected", "recovered")


def check_queue(history: History, policy: Policy) -> CheckResult:
    fx = facts(history)
    d = fx.dispatch
    out = Findings(NAME, policy, fx, KINDS)
    available, probe_ops, probe_reason = fx.probe
    live = fx.live
    last_probe = probe_ops[-1:]

    # recovered: an indeterminate dispatch whose job ran after all (information, not failure).
    recovered: list[int] = []
    if d.indeterminate:
        ran = (fx.attempt_map | fx.effect_map | fx.terminal_map).to_bytes(fx.n, "little")
        recovered = [c for c in d.indeterminate if ran[c]]
    for c in recovered:
        out.add("recovered", c, "dispatch outcome unknown, but the job ran", d.evidence(c),
                "info", (ATTEMPT, EFFECT, OUTCOME))

    # Jobs in the system without a terminal outcome (the usual case: none, at C speed).
    in_system = d.acked_map | job_map(fx.n, recovered)
    for c in fx.members(in_system & ~fx.terminal_map):
        where = live.get(c)
        if where:
            # stuck: no terminal outcome, still queued, scheduled, leased or locked.
            out.add("stuck", c, f"no terminal outcome; still {_where(history, where)} after "
                    "the drain", [*d.evidence(c), *where, *fx.drain_end[-1:]],
                    evidence=(ATTEMPT,))
        elif available:
            # lost: acknowledged, no terminal outcome, and nowhere in the worker's system.
            out.add("lost", c, "acknowledged, no terminal outcome, not in the system",
                    [*d.evidence(c), *last_probe], evidence=(ATTEMPT, EFFECT))
        else:
            # unresolved: lost or stuck, which cannot be told without a probe.
            out.add("unresolved", c, f"no terminal outcome; lost or stuck ({probe_reason})",
                    [*d.evidence(c), *last_probe], "unknown", (ATTEMPT, EFFECT))
    # An indeterminate dispatch that never ran but sits in the queue is stuck too.
    for c in d.indeterminate:
        if c in live and c not in recovered:
            out.add("stuck", c, f"dispatch outcome unknown; still {_where(history, live[c])} "
                    "after the drain", [*d.evidence(c), *live[c]])

    # unexpected: outcomes, attempts or queue entries for a job never dispatched (or whose
    # every dispatch failed). Effects are checked against the steps by the effects checker.
    _unexpected(out, fx)

    undecided = None
    if not in_system:
        undecided = "no dispatch was acknowledged: nothing to decide"
    return out.result(
        undecided=undecided,
        dispatched=len(d.invoked),
        dispatches=d.n_invokes,
        acknowledged=len(d.acked),
        indeterminate=len(d.indeterminate),
        dispatch_failed=len(d.failed),
        completed=fx.n_completed,
        dead=len(fx.reported_dead),
        dead_lettered=len(fx.dead_lettered),
        probe_available=int(available),
    )


def _where(history: History, ops: list[int]) -> str:
    names = []
    for i in ops:
        v = history.values[i]
        names.append(v["state"] if "state" in v else f"locked ({v.get('key')})")
    return " and ".join(dict.fromkeys(names))


def _unexpected(out: Findings, fx: Facts) -> None:
    d = fx.dispatch
    r = d.invoked_span
    if not d.failed and r is not None and r.start == 0 and max(
            max(fx.attempt_ops[1], default=-1), max(fx.outcome_ops[1], default=-1),
            max(fx.states, default=-1), max(fx.locks, default=-1)) < r.stop:
        return  # the usual case: every job observed was dispatched (codes 0, 1, ... n - 1)
    observed = (fx.completed_map | fx.reported_dead_map | fx.attempt_map
                | job_map(fx.n, fx.states) | job_map(fx.n, fx.locks))
    for c in fx.members(observed & (~d.invoked_map | d.failed_map)):
        why = "dispatched, but every dispatch failed" if c in d.failed else "never dispatched"
        out.add("unexpected", c, f"observed in the worker's system, {why}", d.evidence(c),
                evidence=(OUTCOME, ATTEMPT, STATE, LOCK, DISPATCH))
