"""How fast the nightly schedule search finds and shrinks a failure: for each bug switch of
the reference worker, the time to the first believed failure (a generated plan that failed
twice), the time to the shrunk plan, and its number of events.

Target: median <= 60 s to a shrunk plan of <= 3 events. A bug the search does not find within
the profile's examples counts as not found (and as infinitely slow in the median).

    python benchmarks/find_and_shrink.py [--bug NAME ...] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.matrix import EXPECTED

ROOT = Path(__file__).resolve().parent.parent
TEST = "scenarios/test_fault_schedules.py"


def search(bug: str, seed: int) -> dict[str, float | int | str]:
    with tempfile.TemporaryDirectory(prefix="jobchaos-search-") as tmp:
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
                "no:xdist", TEST, "--jobchaos-profile=nightly", f"--jobchaos-seed={seed}",
                f"--jobchaos-worker-bugs={bug}", f"--jobchaos-artifacts-dir={tmp}"]
        started = time.monotonic()
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False,
                              timeout=1200)
        wall = time.monotonic() - started
        found = list(Path(tmp).rglob("search.json"))
        figures = json.loads(found[0].read_text()) if found else {}
        return {"bug": bug, "wall": round(wall, 1), "exit": done.returncode, **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bug", action="append", choices=sorted(EXPECTED))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rows = []
    print(f"{'bug switch':<28}{'found':>8}{'first':>9}{'shrunk':>9}{'events':>8}"
          f"{'cands':>7}{'wall':>8}", flush=True)
    for bug in args.bug or sorted(EXPECTED):
        r = search(bug, args.seed)
        rows.append(r)
        found = "first_failure_s" in r
        print(f"{bug:<28}{'yes' if found else 'no':>8}"
              f"{r.get('first_failure_s', '-'):>8}s{r.get('shrunk_s', '-'):>8}s"
              f"{r.get('events_before', '-')!s:>4}->{r.get('events', '-')!s:<3}"
              f"{r.get('candidates', '-')!s:>7}{r['wall']:>7}s", flush=True)
    shrunk = [float(r["shrunk_s"]) if "shrunk_s" in r else float("inf") for r in rows]
    small = sum(1 for r in rows if "events" in r and int(r["events"]) <= 3)
    print(f"\nfound {sum(1 for r in rows if 'first_failure_s' in r)} of {len(rows)} bug "
          f"switches; median time to a shrunk plan {statistics.median(shrunk):.1f} s "
          f"(target <= 60 s); {small} shrunk to <= 3 events")


if __name__ == "__main__":
    main()
