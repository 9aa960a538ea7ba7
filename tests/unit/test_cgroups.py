"""How the harness decides whether it can make cgroups and impose memory limits (the real
cgroups are exercised in tests/integration/test_worker_trees.py)."""

from __future__ import annotations

import pytest

from harness.services import cgroups


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """Detection forgets what it found, so a test can change what it sees."""
    monkeypatch.setattr(cgroups, "_found", {})


def test_without_a_cgroup_mount_both_say_why_and_how_to_fix_it(
        fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cgroups, "_mounts", lambda: [])
    assert cgroups.hierarchy() is None
    for why in (cgroups.unavailable(), cgroups.memory_limit_unavailable()):
        assert why is not None
        assert "no cgroup v2 hierarchy is mounted; no cgroup v1 memory hierarchy is mounted" in why
        assert "Fix: run the harness as root" in why

