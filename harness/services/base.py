"""One executor shape for every real server the harness runs.

``launch()`` starts the process, ``wait_ready()`` polls the readiness check under one deadline
(so a stack can launch all its servers first and wait for them together), ``start()`` is both.
``stop()`` is graceful then kill, ``kill()`` is SIGKILL, ``running()`` asks the process, and the
object is a context manager. A start failure carries the tail of the server's own log.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

from harness import procs
from harness.errors import ArtifactsDirError, PortInUseError, ServiceStartError

LOG_TAIL_LINES = 25
FULL_BELOW = 64 * 1024  # bytes free under which a filesystem counts as full


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel says is free right now (the caller retries if it is taken by then)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """True when a server could listen on host:port now (as servers do, with SO_REUSEADDR, so
    connections of a just-stopped server lingering in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def who_listens(port: int) -> str:
    """Best-effort description of the process bound to ``port``, for error messages."""
    try:
        import psutil

        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
                if conn.pid:
                    p = psutil.Process(conn.pid)
                    return f"pid {conn.pid} ({' '.join(p.cmdline()[:3])})"
                return "another process"
    except Exception:
        pass
    return "another process"


def free_bytes(path: Path) -> int | None:
    """Bytes free for us on the filesystem holding ``path`` (None if it cannot be asked)."""
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log written)"
    tail = text.splitlines()[-lines:]
    return "\n".join("    " + line for line in tail) if tail else "(log is empty)"


class Service(ABC):
    """A real server in a child process, bound to 127.0.0.1."""

    name: str = "service"
    stop_signal: int = signal.SIGTERM
    port_option: str = ""

    def __init__(self, workdir: Path, *, port: int = 0, host: str = "127.0.0.1",
                 start_timeout: float = 30.0) -> None:
        self.workdir = workdir
        self.host = host
        self._fixed_port = port
        self.port = port
        self.start_timeout = start_timeout
        self.log_path = workdir / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._launches = 0

    # -- to implement -------------------------------------------------------------------
    @abstractmethod
    def command(self) -> list[str]:
        """The argv that runs the server on ``self.host:self.port``."""

    @abstractmethod
    def ready(self) -> bool:
        """One quick readiness probe; must not block longer than a fraction of a second."""

    def prepare(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Create whatever the server needs on disk before launch."""

    def run_as(self) -> str | None:
        """System user to run the server as (None: the current user)."""
        return None

    def env(self) -> Mapping[str, str] | None:
        return None

    # -- lifecycle ----------------------------------------------------------------------
    def launch(self) -> None:
        """Pick a port, prepare, and start the process without waiting for readiness."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._fixed_port:
            if not port_is_free(self.host, self._fixed_port):
                raise PortInUseError(
                    f"{self.name}: port {self.host}:{self._fixed_port} is already in use by "
                    f"{who_listens(self._fixed_port)}. Stop that process, or leave "
                    f"{self.port_option or 'the port'} unset so a free port is picked."
                )
            self.port = self._fixed_port
        else:
            self.port = free_port(self.host)
        self.prepare()
        if self._launches == 0:
            self.log_path.unlink(missing_ok=True)  # a restart appends; a new run starts afresh
        self._launches += 1
        self.process = procs.spawn(self.command(), log_path=self.log_path, env=self.env(),
                                   cwd=self.workdir, user=self.run_as())

    def wait_ready(self, deadline: float | None = None) -> Self:
        """Poll ``ready()`` until it answers, the process exits, or the deadline passes."""
        assert self.process is not None, "launch() first"
        if deadline is None:
            deadline = time.monotonic() + self.start_timeout
        delay = 0.005
        while True:
            code = self.process.poll()
            if code is not None:
                self._fail(f"exited with code {code} before it was ready")
            with contextlib.suppress(OSError):
                if self.ready():
                    return self
            if time.monotonic() >= deadline:
                self._fail(f"was not ready within {self.start_timeout:.0f} s")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def start(self) -> Self:
        """Launch and wait; retry on a fresh port if a picked port was taken in between."""
        for attempt in range(3):
            self.launch()
            try:
                return self.wait_ready()
            except ServiceStartError as exc:
                if self._fixed_port or attempt == 2 or not self._lost_port_race():
                    raise
                del exc
        raise AssertionError("unreachable")

    def _lost_port_race(self) -> bool:
        try:
            text = self.log_path.read_text(errors="replace").lower()
        except OSError:
            return False
        return "address already in use" in text

    def _fail(self, what: str) -> None:
        cmd = " ".join(self.command()) if self.process else "(not started)"
        tail = log_tail(self.log_path)
        if self.process is not None:
            procs.terminate(self.process, signal.SIGKILL, timeout=2)
        free = free_bytes(self.workdir)
        if free is not None and free < FULL_BELOW:
            # A server that cannot write its log or files dies; the disk is to blame, not it.
            raise ArtifactsDirError(
                f"the filesystem of {self.workdir} is full ({free} bytes free: "
                f"{os.strerror(errno.ENOSPC)}); {self.name} {what} because of it. Fix: free "
                "space there, or point --jobchaos-artifacts-dir / JOBCHAOS_ARTIFACTS_DIR at "
                "another filesystem."
            )
        raise ServiceStartError(
            f"{self.name} on {self.host}:{self.port} {what}.\n  command: {cmd}\n"
            f"  log: {self.log_path}\n  last lines of its log:\n{tail}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (``stop_signal``), then SIGKILL of the whole group after ``timeout``."""
        if self.process is not None:
            procs.terminate(self.process, self.stop_signal, timeout)

    def kill(self) -> None:
        """SIGKILL the server's whole process group, as a crash would."""
        if self.process is not None:
            procs.terminate(self.process, signal.SIGKILL, timeout=5)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @contextlib.contextmanager
    def stopped(self, *, crash: bool = False) -> Iterator[None]:
        """Stop the server for the duration of the block (``crash``: SIGKILL, as a crash
        would), then start it again on the same port."""
        if crash:
            self.kill()
        else:
            self.stop()
        port = self._fixed_port
        self._fixed_port = self.port
        try:
            yield
        finally:
            try:
                self.start()
            finally:
                self._fixed_port = port

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop(timeout=2)
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running() else "stopped"
        return f"<{type(self).__name__} {self.host}:{self.port} {state}>"
