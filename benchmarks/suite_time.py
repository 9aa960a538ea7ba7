"""Wall time of the `pr` scenario profile, serial and with `-n 2`, and per scenario the ratio
of its wall time to the waits its policy forces on it.

Targets: `pytest scenarios/` <= 120 s serial and <= 75 s with -n 2 on a 2-core machine; no
scenario above 2x its forced waits. Forced waits (``ChaosRun.forced_wait``): the longest job
chain (attempts cut at the timeout, plus backoffs) or the work spread over the workers, a
lease per kill, and the nemesis's own holds and pauses.

    python benchmarks/suite_time.py [--skip-serial]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(workers: int) -> tuple[float, Path, int]:
    artifacts = Path(tempfile.mkdtemp(prefix=f"jobchaos-suite-{workers}-"))
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "scenarios/",
            f"--jobchaos-artifacts-dir={artifacts}",
            *(["-n", str(workers)] if workers > 1 else ["-p", "no:xdist"])]
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    return time.perf_counter() - started, artifacts, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-serial", action="store_true")
    args = parser.parse_args()
    serial = None if args.skip_serial else run(1)
    parallel = run(2)
    print(f"{'run':<28}{'wall':>10}{'target':>10}{'exit':>6}")
    if serial:
        print(f"{'pytest scenarios/ (serial)':<28}{serial[0]:>9.1f}s{'<= 120s':>10}{serial[2]:>6}")
    print(f"{'pytest scenarios/ -n 2':<28}{parallel[0]:>9.1f}s{'<= 75s':>10}{parallel[2]:>6}")
    if serial and parallel[0]:
        print(f"speed-up with -n 2: {serial[0] / parallel[0]:.2f}x")
    rows = []
    for path in (serial or parallel)[1].rglob("run.json"):
        r = json.loads(path.read_text())
        forced = r.get("forced_wait") or 0.0
        rows.append((r["scenario"], r["seconds"], forced,
                     r["seconds"] / forced if forced else float("nan")))
    print(f"\n{'scenario (serial run)':<88}{'wall':>7}{'forced':>8}{'ratio':>7}")
    for name, wall, forced, ratio in sorted(rows, key=lambda x: -x[3] if x[3] == x[3] else 0):
        flag = "  <-- above 2x" if ratio > 2 else ""
        print(f"{name[-88:]:<88}{wall:>6.1f}s{forced:>7.1f}s{ratio:>7.2f}{flag}")


if __name__ == "__main__":
    main()
