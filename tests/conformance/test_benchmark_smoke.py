"""benchmarks/proxy_overhead.py runs end to end (tiny sizes; the figures are not checked)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "proxy_overhead.py"


def test_benchmark_prints_every_row() -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("TOXIPROXY_URL")}
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--rounds", "200", "--bulk-mb", "4", "--redis-ops", "200"],
        capture_output=True, text=True, timeout=120, env=env, check=True,
    ).stdout
    for row in ("round trip p50 (us)", "round trip p99 (us)", "bulk one way (MB/s)",
                "embedded/direct", "added p50"):
        assert row in out, out
