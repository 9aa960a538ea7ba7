"""Benchmark: load and check a synthetic history of many jobs.

    .venv/bin/python benchmarks/checkers.py               # 1,000,000 jobs
    .venv/bin/python benchmarks/checkers.py --jobs 50000  # a quick run

Writes a well-formed history (JSONL, header first, as the recorder writes it) to a temporary
file, then
prints the time to load it, the time to run every checker over it, jobs per second for each,
and their ratio. Targets: checking >= 500,000 jobs/s on one core, and no slower than loading.

The job mix, per 100 jobs: 60 ``[db_write]``; 20 ``[db_write, email]``; 12 ``[fail 1,
db_write]`` (two attempts, the second after the backoff); 5 ``[sleep, email]``; 3 ``[fail
always]`` (three attempts, dead, dead-lettered). Every job is dispatched (invoke, ok) and
observed after the drain: attempts, effect rows, sink messages, outcomes, probe state; a fault
is injected and healed every 10,000 jobs. About 5.6 ops per job. ``--anomalies K`` plants K
anomalies of each kind so the slow paths run too.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.checkers import Backoff, Policy, check
from harness.history import header_line, load

POLICY = Policy(max_tries=3, backoff=Backoff(base=0.05, cap=1.0), job_timeout=1.0, lease=2.0)
_MIX = ["plain"] * 60 + ["email"] * 20 + ["retry"] * 12 + ["mail_only"] * 5 + ["doomed"] * 3
_STEPS = {
    "plain": [{"op": "db_write"}],
    "email": [{"op": "db_write"}, {"op": "email"}],
    "retry": [{"op": "fail", "times": 1}, {"op": "db_write"}],
    "mail_only": [{"op": "sleep", "seconds": 0.01}, {"op": "email"}],
    "doomed": [{"op": "fail", "times": None}],
}


class _Writer:
    def __init__(self, fh: object) -> None:
        self.fh = fh
        self.n = 0
        self.buf: list[str] = []

    def op(self, type_: str, process: str, f: str, value: str, t: float) -> None:
        self.buf.append(
            f'{{"index":{self.n},"type":"{type_}","process":"{process}","f":"{f}",'
            f'"value":{value},"time":{int(t * 1e9)},"wall":{1.7e9 + t:.6f}}}\n'
        )
        self.n += 1
        if len(self.buf) >= 65536:
            self.flush()

    def flush(self) -> None:
        self.fh.write("".join(self.buf))  # type: ignore[attr-defined]
        self.buf.clear()


def synthesize(path: Path, jobs: int, anomalies: int = 0) -> int:
    """Write the history; return its number of ops."""
    kinds = [_MIX[(i * 37) % 100] for i in range(jobs)]
    steps_json = {k: json.dumps(s, separators=(",", ":")) for k, s in _STEPS.items()}
    obs = "ok", "observer"
    t = 0.0
    with path.open("w") as fh:
        fh.write(header_line(1.7e9))
        w = _Writer(fh)
        for i in range(jobs):
            job = f'"job-{i:07d}"'
            if i % 10_000 == 5_000:
                w.op("info", "nemesis", "inject", _fault(f"f{i}", '{"ms":50}'), t)
            if i % 10_000 == 9_000:
                w.op("info", "nemesis", "heal", _fault(f"f{i - 4000}", "{}"), t)
            steps = steps_json[kinds[i]]
            w.op("invoke", "dispatcher", "dispatch", f'{{"job":{job},"steps":{steps}}}', t)
            t += 1e-6
            if not (anomalies and i < anomalies):  # the first K jobs: never acknowledged
                w.op("ok", "dispatcher", "dispatch", f'{{"job":{job}}}', t)
            t += 1e-6
        w.op("invoke", "observer", "drain", '{"deadline":30.0}', t)
        w.op("ok", "observer", "drain", '{"pending":0}', t + 1)
        t += 2
        w.op(*obs, "probe", '{"available":true}', t)
        for i in range(jobs):
            if kinds[i] == "doomed":
                v = f'{{"job":"job-{i:07d}","state":"dead","reason":"exception"}}'
                w.op(*obs, "state", v, t)
        for i in range(jobs):  # attempts (table order: by job)
            job, at, k = f'"job-{i:07d}"', 10.0 + i * 1e-4, kinds[i]
            tries = 3 if k == "doomed" else 2 if k == "retry" else 1
            for n in range(1, tries + 1):
                end = ('"status":"completed"' if n == tries and k != "doomed" else
                       f'"status":"{"dead" if n == tries else "retrying"}","reason":"exception"')
                w.op(*obs, "attempt", f'{{"job":{job},"attempt":{n},"attempt_id":{i * 4 + n},'
                     f'"worker":"worker-{i % 4}","at":{at:.4f},"ended":{at + 0.001:.4f},{end}}}',
                     t)
                at += 0.001 + POLICY.backoff.delay(n) + 0.002
        for i in range(jobs):  # effect rows and sink messages
            k = kinds[i]
            for n, s in enumerate(_STEPS[k]):
                if s["op"] in ("db_write", "email") and k != "doomed":
                    copies = 2 if anomalies and anomalies <= i < 2 * anomalies else 1
                    v = (f'{{"job":"job-{i:07d}","step":{n},"kind":"{s["op"]}",'
                         f'"ref":{i * 4 + n},"at":{10.0 + i * 1e-4:.4f}}}')
                    for _ in range(copies):
                        w.op(*obs, "effect", v, t)
        for i in range(jobs):  # outcomes
            at = f"{11.0 + i * 1e-4:.4f}"
            if kinds[i] == "doomed":
                w.op(*obs, "outcome", f'{{"job":"job-{i:07d}","status":"dead",'
                     f'"reason":"exception","attempt":3,"attempt_id":{i * 4 + 3},"at":{at}}}', t)
            elif not (anomalies and 2 * anomalies <= i < 3 * anomalies):  # these: lost
                w.op(*obs, "outcome", f'{{"job":"job-{i:07d}","status":"completed","at":{at}}}', t)
        for k in range(anomalies):  # unexpected, leaked locks
            w.op(*obs, "outcome", f'{{"job":"ghost-{k}","status":"completed"}}', t)
            w.op(*obs, "lock", f'{{"key":"unique:job-{k:07d}","ttl":null}}', t)
        w.flush()
    return w.n


def _fault(fault: str, params: str) -> str:
    return f'{{"fault":"{fault}","target":"redis","kind":"latency","params":{params}}}'


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=1_000_000)
    ap.add_argument("--anomalies", type=int, default=0, help="plant K anomalies of each kind")
    ap.add_argument("--keep", type=Path, help="write the history here and keep it")
    ap.add_argument("--profile", action="store_true", help="profile the checkers")
    args = ap.parse_args()

    tmp = None
    if args.keep:
        path = args.keep
    else:
        fd, tmp = tempfile.mkstemp(prefix="jobchaos-bench-", suffix=".jsonl")
        os.close(fd)
        path = Path(tmp)
    try:
        t0 = time.perf_counter()
        n_ops = synthesize(path, args.jobs, args.anomalies)
        t_gen = time.perf_counter() - t0
        size = path.stat().st_size
        print(f"history: {args.jobs:,} jobs, {n_ops:,} ops, {size / 1e6:.0f} MB "
              f"(written in {t_gen:.1f} s)")

        t0 = time.perf_counter()
        history = load(path)
        t_load = time.perf_counter() - t0

        prof = cProfile.Profile() if args.profile else None
        t0 = time.perf_counter()
        if prof:
            prof.enable()
        result = check(history, POLICY)
        if prof:
            prof.disable()
        t_check = time.perf_counter() - t0

        print(f"load:   {t_load:7.2f} s  {args.jobs / t_load:12,.0f} jobs/s  "
              f"{n_ops / t_load:12,.0f} ops/s")
        print(f"check:  {t_check:7.2f} s  {args.jobs / t_check:12,.0f} jobs/s  "
              f"{n_ops / t_check:12,.0f} ops/s  (all {len(result.children)} checkers)")
        print(f"ratio:  check/load = {t_check / t_load:.2f}")
        print(f"verdict: {result.validity}; "
              + ", ".join(f"{k}={v}" for k, v in result.counts.items() if v))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB -> GB
        print(f"memory: peak {peak:.1f} GB (resident)")
        ok_speed = args.jobs / t_check >= 500_000
        print(f"targets: >= 500,000 jobs/s: {'met' if ok_speed else 'MISSED'}; "
              f"check no slower than load: {'met' if t_check <= t_load else 'MISSED'}")
        if prof:
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    finally:
        if tmp is not None:
            os.unlink(path)


if __name__ == "__main__":
    main()
