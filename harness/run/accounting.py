"""The least time a run's policy forces on it, for benchmarks/suite_time.py: how long the
jobs must take, how long kills leave work to a lease expiry, and how long the nemesis
deliberately held faults or waited to strike."""

from __future__ import annotations

from collections.abc import Iterable

from harness.contract import Job, Policy


def job_chain(j: Job, policy: Policy) -> float:
    """Seconds one job needs at least: its attempts (each cut at the timeout) and backoffs."""
    run = sum(float(s.get("seconds", 0)) for s in j.steps if s["op"] in ("sleep", "cpu"))
    run += sum(float(s.get("hold", 0)) for s in j.steps if s["op"] == "alloc")
    per_attempt = min(run, policy.job_timeout)
    doomed = run > policy.job_timeout or any(
        (s["op"] == "fail" and s.get("times") is None)
        or (s["op"] == "alloc" and int(s["mb"]) > policy.memory_limit_mb) for s in j.steps)
    failing = [int(s.get("times") or 0) for s in j.steps if s["op"] in ("fail", "crash")]
    attempts = policy.max_tries if doomed else min(policy.max_tries, 1 + max(failing, default=0))
    return attempts * per_attempt + sum(policy.backoff(k) for k in range(1, attempts))


def forced_wait(jobs: Iterable[Job], policy: Policy, *, workers: int, kills: int,
                held: float) -> float:
    """The longest job chain (or all the work spread over the workers, if longer), a lease
    per kill, and the nemesis's holds."""
    chains = [job_chain(j, policy) for j in jobs]
    work = max(max(chains, default=0.0), sum(chains) / max(1, workers))
    return work + kills * policy.lease + held
