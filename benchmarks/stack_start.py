"""How fast the harness brings up its stack and hands a test fresh state.

Prints, in one run: cold start (empty per-machine cache, so initdb runs), warm start (cache
filled), and per-test hand-outs (a fresh PostgreSQL database, a fresh Redis database).
Targets: warm full stack <= 2 s; fresh database per test <= 100 ms.

    python benchmarks/stack_start.py [--repeat 5] [--databases 50]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from harness.config import Config
from harness.services.stack import Stack


def timed_start(config: Config, workdir: Path) -> tuple[float, Stack]:
    started = time.perf_counter()
    stack = Stack(config, workdir).start()
    return time.perf_counter() - started, stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="warm starts to time")
    parser.add_argument("--databases", type=int, default=50, help="fresh databases to time")
    parser.add_argument("--postgres-bin-dir", type=Path, default=None,
                        help="PostgreSQL to use (default: PATH, then the wheel)")
    args = parser.parse_args()

    cache = Path(tempfile.mkdtemp(prefix="jobchaos-bench-cache-", dir="/var/tmp"))
    work = Path(tempfile.mkdtemp(prefix="jobchaos-bench-"))
    config = Config(cache_dir=cache, postgres_bin_dir=args.postgres_bin_dir)
    try:
        cold, stack = timed_start(config, work / "cold")
        stack.stop()
        warm = []
        for i in range(args.repeat):
            seconds, stack = timed_start(config, work / f"warm{i}")
            warm.append(seconds)
            if i < args.repeat - 1:
                stack.stop()
        db_times, redis_times = [], []
        for _ in range(args.databases):
            t = time.perf_counter()
            name, _url = stack.fresh_database()
            db_times.append(time.perf_counter() - t)
            stack.drop_database(name)
            t = time.perf_counter()
            stack.fresh_redis_url()
            redis_times.append(time.perf_counter() - t)
        stack.stop()
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)

    def ms(xs: list[float], q: str) -> str:
        value = statistics.median(xs) if q == "p50" else max(xs)
        return f"{value * 1000:8.1f} ms"

    print(f"{'measure':<40}{'p50':>12}{'max':>12}{'target':>12}")
    print(f"{'cold full stack (initdb into cache)':<40}{cold * 1000:9.1f} ms{'':>12}{'-':>12}")
    print(f"{'warm full stack (x' + str(args.repeat) + ')':<40}{ms(warm, 'p50'):>12}{ms(warm, 'max'):>12}"
          f"{'<= 2000 ms':>12}")
    print(f"{'fresh PostgreSQL database (x' + str(args.databases) + ')':<40}{ms(db_times, 'p50'):>12}"
          f"{ms(db_times, 'max'):>12}{'<= 100 ms':>12}")
    print(f"{'fresh Redis database (x' + str(args.databases) + ')':<40}{ms(redis_times, 'p50'):>12}"
          f"{ms(redis_times, 'max'):>12}{'-':>12}")
    print(f"PostgreSQL: {stack.postgres.cache.version if hasattr(stack.postgres, 'cache') else '?'}")
    print(f"warm/cold ratio: {statistics.median(warm) / cold:.2f}")


if __name__ == "__main__":
    main()
