"""Start a Toxiproxy server as a child process (embedded or real) and stop it for sure.

Children go through `harness.procs.spawn`: own session (stopped by killing the process
group), killed by the kernel if the harness dies, and marked for the orphan sweep.
"""

from __future__ import annotations

import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen
from typing import Literal

from harness import procs

from .client import ToxiproxyClient, ToxiproxyUnavailable
from .server import READY_PREFIX


class LaunchError(RuntimeError):
    """The server did not come up; the message says why and shows its last log lines."""


@dataclass
class ServerProcess:
    """A running server: its URL, process, kind and log; a context manager that stops it."""

    url: str
    process: Popen[bytes]
    kind: Literal["embedded", "real"]
    log_path: Path
    temporary_log: bool = False

    def client(self, timeout: float = 5.0) -> ToxiproxyClient:
        return ToxiproxyClient(self.url, timeout=timeout)

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the process group, SIGKILL after timeout; a process already gone is fine."""
        procs.terminate(self.process, timeout=timeout)
        if self.temporary_log:
            self.log_path.unlink(missing_ok=True)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:]) or "(no output)"

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _log_path(log_path: Path | None, stem: str) -> Path:
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        return log_path
    with tempfile.NamedTemporaryFile(prefix=f"{stem}-", suffix=".log", delete=False) as f:
        return Path(f.name)


def _child_env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_embedded(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    seed: int | None = None,
    config: Path | None = None,
    python: str = sys.executable,
    timeout: float = 15.0,
    log_path: Path | None = None,
    extra_args: tuple[str, ...] = (),
) -> ServerProcess:
    """`python -m harness.toxiproxy` on host:port (0 picks a free port); waits until ready."""
    cmd = [python, "-m", "harness.toxiproxy", "--host", host, "--port", str(port)]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    if config is not None:
        cmd += ["--config", str(config)]
    cmd += list(extra_args)
    path = _log_path(log_path, "toxiproxy-embedded")
    offset = path.stat().st_size if path.exists() else 0  # the log is appended to
    proc = procs.spawn(cmd, log_path=path, env=_child_env())
    server = ServerProcess("", proc, "embedded", path, temporary_log=log_path is None)
    try:
        server.url = _wait_ready_line(server, offset, timeout)
    except LaunchError as exc:
        server.temporary_log = False  # keep it: the error points at it
        server.stop()
        raise LaunchError(
            f"{exc}; command: {' '.join(cmd)}; its log ({path}): {server.log_tail()}"
        ) from None
    return server


def _wait_ready_line(server: ServerProcess, offset: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with server.log_path.open("rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace")
        except OSError:
            text = ""
        for line in text.splitlines():
            if line.startswith(READY_PREFIX):
                return line[len(READY_PREFIX) :].strip()
        if not server.running():
            raise LaunchError(f"embedded toxiproxy exited (code {server.process.returncode})")
        if time.monotonic() >= deadline:
            raise LaunchError(f"embedded toxiproxy did not report ready within {timeout:g}s")
        time.sleep(0.01)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def start_real(
    binary: str,
    host: str = "127.0.0.1",
    port: int | None = None,
    *,
    timeout: float = 15.0,
    log_path: Path | None = None,
) -> ServerProcess:
    """The real `toxiproxy-server` binary on host:port; waits until /version answers."""
    port = port or free_port(host)
    cmd = [binary, "-host", host, "-port", str(port)]
    path = _log_path(log_path, "toxiproxy-real")
    proc = procs.spawn(cmd, log_path=path, env=_child_env())
    server = ServerProcess(f"http://{host}:{port}", proc, "real", path, log_path is None)
    try:
        server.client(timeout=1.0).wait_until_ready(timeout)
    except ToxiproxyUnavailable:
        server.temporary_log = False
        server.stop()
        raise LaunchError(
            f"toxiproxy-server did not answer within {timeout:g}s; command: {' '.join(cmd)}; "
            f"its log ({path}): {server.log_tail()}"
        ) from None
    return server
