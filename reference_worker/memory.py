"""The per-attempt memory limit, enforced for real.

As root with the cgroup v1 memory controller writable, each worker makes its own cgroup (named
after the worker and its pid) below the one it runs in (so, under the harness, inside the
cgroup the harness made for it), sets ``memory.limit_in_bytes`` (and ``memsw``, so swap cannot
take the excess), and every job child joins it: the kernel OOM-kills a child that goes over,
and the cgroup's ``oom_kill`` counter tells the worker why the child died. Elsewhere an RSS
watchdog polls the child with psutil and SIGKILLs it the way the OOM killer would.

``REFERENCE_WORKER_MEMORY=auto|cgroup|watchdog|off`` chooses (default ``auto``); ``off``: no
limit of its own, as most workers have (only a limit from outside, such as the harness's
cgroup or a container's, stops a job).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

from reference_worker.log import log

if TYPE_CHECKING:
    import psutil

ENV_MEMORY: Final = "REFERENCE_WORKER_MEMORY"
CGROUP_PREFIX: Final = "reference_worker-"
WATCHDOG_INTERVAL: Final = 0.02  # seconds between RSS samples of a running child


class MemoryGuard(Protocol):
    kind: str
    poll_interval: float | None  # how often the parent must call over_limit(); None: never

    def enter(self) -> None:
        """In the child, before any step runs."""

    def oom_kills(self) -> int:
        """How many processes the kernel killed for memory so far (0 if it cannot tell)."""

    def over_limit(self, pid: int) -> bool:
        """Whether the child ``pid`` (with its own children) uses more than the limit."""

    def close(self) -> None: ...


class CgroupMemory:
    """A cgroup v1 memory cgroup of this worker's own; the kernel enforces the limit."""

    kind: str = "cgroup"
    poll_interval: float | None = None

    def __init__(self, path: Path, limit_bytes: int) -> None:
        self.path = path
        path.mkdir()
        try:
            (path / "memory.limit_in_bytes").write_text(str(limit_bytes))
            memsw = path / "memory.memsw.limit_in_bytes"
            if memsw.exists():
                memsw.write_text(str(limit_bytes))
            with contextlib.suppress(OSError):
                (path / "memory.swappiness").write_text("0")
        except BaseException:
            self.close()
            raise

    def enter(self) -> None:
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def oom_kills(self) -> int:
        text = (self.path / "memory.oom_control").read_text()
        found = re.search(r"^oom_kill (\d+)$", text, re.M)
        if found:
            return int(found.group(1))
        return int((self.path / "memory.failcnt").read_text())  # kernels before 4.13

    def over_limit(self, pid: int) -> bool:
        return False

    def close(self) -> None:
        for _ in range(50):  # the last child may take a moment to leave after it is reaped
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)
        log(f"could not remove cgroup {self.path}")


class RssWatchdog:
    """Poll the child's resident set; the parent SIGKILLs it when it goes over."""

    kind: str = "watchdog"
    poll_interval: float | None = WATCHDOG_INTERVAL

    def __init__(self, limit_bytes: int) -> None:
        import psutil  # only here: every module the worker imports makes each fork slower

        self.limit_bytes = limit_bytes
        self._psutil = psutil

    def enter(self) -> None:
        pass

    def oom_kills(self) -> int:
        return 0

    def over_limit(self, pid: int) -> bool:
        ps = self._psutil
        try:
            proc: psutil.Process = ps.Process(pid)
            rss = proc.memory_info().rss
            for child in proc.children(recursive=True):
                with contextlib.suppress(ps.Error):
                    rss += child.memory_info().rss
        except ps.Error:
            return False
        return rss > self.limit_bytes

    def close(self) -> None:
        pass


class NoGuard:
    """No limit of the worker's own: only one from outside (a container's, the harness's
    cgroup) stops a job, and the worker sees just a SIGKILL."""

    kind: str = "off"
    poll_interval: float | None = None

    def enter(self) -> None:
        pass

    def oom_kills(self) -> int:
        return 0

    def over_limit(self, pid: int) -> bool:
        return False

    def close(self) -> None:
        pass


def memory_cgroup_dir() -> Path | None:
    """This process's cgroup v1 memory directory (read from ``/proc/self/cgroup``), if the
    controller is mounted: the worker's own cgroups go below it."""
    mount: tuple[str, str] | None = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split()
            sep = fields.index("-")
            fstype, super_opts = fields[sep + 1], fields[sep + 3] if len(fields) > sep + 3 else ""
            if fstype == "cgroup" and "memory" in super_opts.split(","):
                mount = (fields[3], fields[4])  # (root inside the hierarchy, mount point)
                break
    if mount is None:
        return None
    root, point = mount
    own = "/"
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                own = path
    relative = os.path.relpath(own, root) if own.startswith(root) else "."
    candidate = Path(point) / relative
    return candidate if candidate.is_dir() else Path(point)


def sweep_stale(parent: Path) -> None:
    """Remove cgroups left by reference workers that died without cleaning up."""
    import psutil

    for entry in parent.glob(f"{CGROUP_PREFIX}*"):
        pid = entry.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            with contextlib.suppress(OSError):
                entry.rmdir()


def cgroup_available(parent: Path | None) -> bool:
    return (os.geteuid() == 0 and parent is not None
            and (parent / "memory.limit_in_bytes").exists() and os.access(parent, os.W_OK))


def memory_guard(limit_mb: int, worker_id: str, mode: str = "auto") -> MemoryGuard:
    """The best enforcement available (``mode``: auto, cgroup, watchdog or off)."""
    if mode not in ("auto", "cgroup", "watchdog", "off"):
        raise ValueError(f"{ENV_MEMORY}={mode!r}: expected auto, cgroup, watchdog or off")
    if mode == "off":
        return NoGuard()
    limit = limit_mb * 1024 * 1024
    if mode != "watchdog":
        parent = memory_cgroup_dir()
        if cgroup_available(parent):
            assert parent is not None
            sweep_stale(parent)
            name = re.sub(r"[^A-Za-z0-9_.]", "_", worker_id)
            try:
                return CgroupMemory(parent / f"{CGROUP_PREFIX}{name}-{os.getpid()}", limit)
            except OSError as exc:
                if mode == "cgroup":
                    raise
                log(f"cannot use a memory cgroup under {parent} ({exc}); using the RSS watchdog")
        elif mode == "cgroup":
            raise RuntimeError("the cgroup v1 memory controller is not available (needs root "
                               "and a writable /sys/fs/cgroup/memory)")
    return RssWatchdog(limit)
