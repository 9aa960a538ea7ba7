"""How the harness answers a mistake: one message, within seconds, no traceback.

Runs ``pytest scenarios/`` in a subprocess once per bad input (every setting of the README's
settings table given a bad value, plus the mistakes of issue 16: missing or non-executable
binaries, unreachable or silent servers, an unusable artifacts directory) and prints, per
input: the exit code, the lines of output, how many tracebacks and "Fix:" lines they hold, the
seconds to the end of the run, and the first line of the message.
Targets: one message (one "Fix:" line), no traceback, under 10 s.

    python benchmarks/bad_input.py [--suite scenarios/] [--only NAME ...] [--timeout 600]

Inputs that need a private mount (a read-only or a full artifacts directory) run the pytest
process under ``unshare --mount`` and are skipped where that is not allowed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MESSAGE = re.compile(r"(Error|ERROR|error:|Interrupted|Exit:|not valid|Fix:)")
# pytest's own frames, hook wrappers etc. are not the message; neither are progress dots.
# The exception line of a pytest traceback ("E   FileNotFoundError: ...").
PYTEST_TB = re.compile(r"^E\s+[\w.]+(Error|Exception|Exit)\b")
NOISE = re.compile(r"^(=+|_+|-+|\.+|[.sFE]+ *\[ *\d+%\])")


@dataclass
class Case:
    name: str
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    mount: str | None = None  # "ro" or "full": artifacts dir on a private tmpfs


@dataclass
class Outcome:
    case: Case
    code: int | str
    lines: int
    tracebacks: int
    fixes: int
    seconds: float
    first: str


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def silent_server() -> Iterator[int]:
    """A port that accepts connections (the kernel completes them) and never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield int(s.getsockname()[1])


def cases(tmp: Path, silent: int) -> list[Case]:
    closed = closed_port()
    not_exec = tmp / "redis-server"
    not_exec.write_text("#!/bin/sh\n")
    not_exec.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return [
        Case("redis-url refused", [f"--jobchaos-redis-url=redis://127.0.0.1:{closed}/0"]),
        Case("redis-url unknown host", ["--jobchaos-redis-url=redis://no-such-host.invalid:6379/0"]),
        Case("redis-url silent (timeout 3)", [f"--jobchaos-redis-url=redis://127.0.0.1:{silent}/0",
                                              "--jobchaos-start-timeout=3"]),
        Case("redis-url not a URL", ["--jobchaos-redis-url=localhost:6379"]),
        Case("database-url refused",
             [f"--jobchaos-database-url=postgresql://postgres@127.0.0.1:{closed}/postgres"]),
        Case("database-url not a URL", ["--jobchaos-database-url=127.0.0.1:5432"]),
        Case("smtp refused", [f"--jobchaos-smtp=127.0.0.1:{closed}"]),
        Case("smtp not HOST:PORT", ["--jobchaos-smtp=nohost"]),
        Case("toxiproxy-url refused", [f"--jobchaos-toxiproxy-url=http://127.0.0.1:{closed}"]),
        Case("redis-bin missing", [f"--jobchaos-redis-bin={tmp}/nope/redis-server"]),
        Case("redis-bin not executable", [f"--jobchaos-redis-bin={not_exec}"]),
        Case("postgres-bin-dir missing", [f"--jobchaos-postgres-bin-dir={tmp}/nope"]),
        Case("pg-user cannot be created", ["--jobchaos-pg-user=bad user!"]),
        Case("cache-dir /proc/x", ["--jobchaos-cache-dir=/proc/x"]),
        Case("artifacts-dir /proc/x", ["--jobchaos-artifacts-dir=/proc/x"]),
        Case("artifacts-dir read-only", mount="ro"),
        Case("artifacts-dir full", mount="full"),
        Case("start-timeout 0", ["--jobchaos-start-timeout=0"]),
        Case("profile unknown", ["--jobchaos-profile=weekly"]),
        Case("seed not a number", ["--jobchaos-seed=abc"]),
        Case("worker-cmd missing", [f"--jobchaos-worker-cmd={tmp}/nope/worker --flag"]),
        Case("worker-cmd exits at once", ["--jobchaos-worker-cmd=python -c 'raise SystemExit(3)'"]),
        Case("worker never ready (timeout 3)", ["--jobchaos-worker-cmd=python -c 'import time; "
                                                "time.sleep(1e9)'", "--jobchaos-probe-cmd=none",
                                                "--jobchaos-ready-timeout=3"]),
        Case("ready-timeout 0", ["--jobchaos-ready-timeout=0"]),
        Case("probe-cmd missing", [f"--jobchaos-probe-cmd={tmp}/nope/probe"]),
        Case("worker-bugs unknown", ["--jobchaos-worker-bugs=no_such_bug"]),
        Case("replay file missing", [f"--jobchaos-replay={tmp}/nope.json"]),
    ]


def command(case: Case, suite: str, artifacts: Path) -> list[str] | None:
    pytest = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", suite,
              *case.args]
    if case.mount is None:
        return pytest
    if shutil.which("unshare") is None:
        return None
    artifacts.mkdir(parents=True, exist_ok=True)
    if case.mount == "ro":
        setup = f"mount -t tmpfs -o ro,size=64k tmpfs {artifacts}"
    else:
        setup = (f"mount -t tmpfs -o size=64k tmpfs {artifacts} && "
                 f"(dd if=/dev/zero of={artifacts}/filler bs=4k 2>/dev/null || true)")
    quoted = " ".join(f"'{a}'" for a in pytest)
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        return None
    return ["unshare", "--mount", "sh", "-c", f"{setup} && exec {quoted}"]


def run(case: Case, suite: str, tmp: Path, timeout: float) -> Outcome | None:
    artifacts = tmp / f"artifacts-{re.sub(r'[^a-z0-9]+', '-', case.name.lower())}"
    argv = command(case, suite, artifacts)
    if argv is None:
        return None
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("JOBCHAOS_") and k not in ("TOXIPROXY_URL", "PYTEST_XDIST_WORKER")}
    env["JOBCHAOS_ARTIFACTS_DIR"] = str(artifacts)
    env.update(case.env)
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout)
        code: int | str = proc.returncode
        out = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        code = "timeout"
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) \
            else (exc.stdout or "")
    seconds = time.monotonic() - started
    lines = out.splitlines()
    first = next((ln.strip() for ln in lines if MESSAGE.search(ln) and not NOISE.match(ln)), "")
    tracebacks = out.count("Traceback (most recent call last)") + sum(
        bool(PYTEST_TB.match(ln)) for ln in lines)
    return Outcome(case, code, len(lines), tracebacks,
                   sum("Fix:" in ln for ln in lines), seconds, first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="scenarios/", help="what pytest runs (default: "
                        "scenarios/)")
    parser.add_argument("--only", nargs="*", default=None, help="names (substrings) to run")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per run")
    parser.add_argument("--width", type=int, default=110, help="characters of the message shown")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="jobchaos-bad-input-"))
    try:
        with silent_server() as silent:
            print(f"{'bad input':<30} {'exit':>5} {'lines':>6} {'tb':>3} {'fix':>4} {'s':>6}  "
                  "first message line")
            for case in cases(tmp, silent):
                if args.only and not any(o in case.name for o in args.only):
                    continue
                o = run(case, args.suite, tmp, args.timeout)
                if o is None:
                    print(f"{case.name:<30} skipped (needs unshare --mount)")
                    continue
                ok = o.fixes == 1 and o.tracebacks == 0 and o.seconds < 10
                print(f"{case.name:<30} {o.code!s:>5} {o.lines:>6} {o.tracebacks:>3} {o.fixes:>4} "
                      f"{o.seconds:>6.1f}  {'' if ok else '! '}{o.first[:args.width]}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("targets: one message (fix == 1), no traceback (tb 0), under 10 s; '!' marks a miss")


if __name__ == "__main__":
    main()
