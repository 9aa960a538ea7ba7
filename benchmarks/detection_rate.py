"""How reliably the scenarios catch each bug switch, and how often they wrongly fail the
correct worker: the detection matrix repeated N times.

Targets: every bug caught in >= 19 of 20 runs; 0 false positives in 20 full runs.

    python benchmarks/detection_rate.py [--runs 20] [--bug NAME ...] [--workers 2]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from harness.matrix import EXPECTED, evaluate

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--bug", action="append", choices=sorted(EXPECTED))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    bugs = args.bug or sorted(EXPECTED)
    caught: Counter[str] = Counter()
    right: Counter[str] = Counter()
    false_positives = 0
    for i in range(1, args.runs + 1):
        baseline, rows = evaluate(ROOT, args.workers, bugs)
        wrong = [t for t, o in baseline.outcomes.items() if o == "failed"]
        false_positives += len(wrong)
        for r in rows:
            caught[r.bug] += r.caught
            right[r.bug] += r.right_reason
        print(f"run {i}: correct worker {len(wrong)} failing {wrong or ''}; missed "
              f"{[r.bug for r in rows if not r.caught] or 'none'}", flush=True)
    print(f"\n{'bug switch':<30}{'caught':>10}{'right reason':>14}{'target':>10}")
    for bug in bugs:
        print(f"{bug:<30}{caught[bug]:>7}/{args.runs:<2}{right[bug]:>11}/{args.runs:<2}"
              f"{'>= 95%':>10}")
    print(f"\nfalse positives on the correct worker: {false_positives} in {args.runs} full "
          f"runs (target 0)")


if __name__ == "__main__":
    main()
