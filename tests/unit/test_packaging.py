"""What a plain ``pip install -e .`` gives: enough for ``pytest scenarios/`` to run bounded."""

from __future__ import annotations

import tomllib
from pathlib import Path

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())


def test_the_per_test_time_limit_needs_no_extras():
    """The ini's ``timeout`` is pytest-timeout's: without it installed pytest warns "Unknown
    config option: timeout" and a hung scenario hangs for ever."""
    assert PYPROJECT["tool"]["pytest"]["ini_options"]["timeout"] > 0
    runtime = [d.split(">")[0].split("=")[0].strip() for d in PYPROJECT["project"]["dependencies"]]
    assert "pytest-timeout" in runtime
