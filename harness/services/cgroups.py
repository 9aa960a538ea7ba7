"""Placeholder until the harness imposes memory limits (a cgroup per worker process)."""

from __future__ import annotations


def memory_limit_unavailable() -> str | None:
    """Why the harness cannot impose a memory limit on a worker (None: it can)."""
    return "the harness does not make memory-limited cgroups yet"
