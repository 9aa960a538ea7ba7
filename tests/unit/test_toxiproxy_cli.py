"""`python -m harness.toxiproxy`: flags, config file, clean shutdown."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness.toxiproxy.launcher import start_embedded


def test_version_flag() -> None:
    out = subprocess.run([sys.executable, "-m", "harness.toxiproxy", "-version"],
                         capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.startswith("toxiproxy-server version 2.12.0")


def test_config_file_populates_and_sigterm_stops(tmp_path: Path) -> None:
    config = tmp_path / "toxiproxy.json"
    config.write_text(json.dumps([
        {"name": "redis", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:6379"},
        {"name": "pg", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:5432", "enabled": False},
    ]))
    server = start_embedded(config=config, seed=5, log_path=tmp_path / "server.log")
    try:
        proxies = server.client().proxies()
        assert sorted(proxies) == ["pg", "redis"]
        assert proxies["pg"].enabled is False and proxies["redis"].enabled is True
    finally:
        server.stop(timeout=10)
    assert server.process.returncode == 0  # SIGTERM is a clean shutdown


def test_bad_config_is_logged_not_fatal(tmp_path: Path) -> None:
    config = tmp_path / "bad.json"
    config.write_text('[{"name": "x"}]')
    log = tmp_path / "server.log"
    with start_embedded(config=config, log_path=log) as server:
        assert server.client().proxies() == {}
    assert "missing required field: upstream at proxy 1" in log.read_text()
