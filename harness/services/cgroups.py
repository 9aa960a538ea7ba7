"""A cgroup per worker process, made by the harness (cgroup v1 and v2).

A SIGKILL to a worker's process group misses a job process that left the group (``setpgrp``,
``setsid``: RQ's work horse does); a cgroup holds every process the worker ever started, so a
kill reaches them all. A memory limit on it is what a container limit or systemd's
``MemoryMax`` is in production: a job past it is OOM-killed whatever the worker does.

Layout: ``<base>/jobchaos-<harness pid>/<worker id>-<start>``. ``<base>`` is the harness's own
cgroup: in v1, in the memory hierarchy; in v2, in the unified one, or its parent when the
memory controller cannot be enabled below the harness's own cgroup (a v2 cgroup that holds
processes cannot hand controllers down). A directory named after a harness pid that no longer
runs is a leftover: :func:`sweep_stale` kills what is left in it and removes it.

Which hierarchy (:func:`hierarchy`): v2 with the memory controller, else v1's memory
hierarchy, else v2 without it (kills, no limits), else none: :func:`unavailable` says why and
the worker pool falls back on the descendants it captures with psutil.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

PREFIX: Final = "jobchaos-"
MIB: Final = 1024 * 1024
KILL_TIMEOUT: Final = 5.0  # seconds a kill may take to empty a cgroup
POLL: Final = 0.005  # seconds between looks at a cgroup that is emptying
HOW: Final = ("run the harness as root with a writable cgroup v1 memory hierarchy or a cgroup "
              "v2 subtree that can enable the memory controller (a container limit then works "
              "the same way)")


class CgroupError(OSError):
    """A cgroup could not be made, joined or removed (the message says which and why)."""


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """Where this harness makes its cgroups: ``version`` 1 or 2, under ``base``; ``memory``
    says why cgroups made here cannot be memory-limited (None: they can)."""

    version: int
    base: Path
    memory: str | None = None

    @property
    def home(self) -> Path:
        """This harness process's own directory (named after its pid, for the sweep)."""
        return self.base / f"{PREFIX}{os.getpid()}"

    def make(self, name: str) -> Cgroup:
        """A new, empty cgroup ``name`` (made safe for a path) in this harness's directory."""
        home = self.home
        try:
            if not home.is_dir():
                home.mkdir(exist_ok=True)
                _homes[home] = self.version
                self._hand_down(home)
            path = home / re.sub(r"[^A-Za-z0-9_.-]", "_", name)
            path.mkdir()
        except OSError as exc:
            raise CgroupError(exc.errno, f"cannot make a cgroup in {home}: {exc.strerror}. "
                              f"Fix: {HOW}") from None
        group = Cgroup(path, self.version)
        if self.version == 1:
            with contextlib.suppress(OSError):  # children count in our usage and limit
                (path / "memory.use_hierarchy").write_text("1")
        return group

    def _hand_down(self, home: Path) -> None:
        if self.version == 1:
            with contextlib.suppress(OSError):
                (home / "memory.use_hierarchy").write_text("1")
        elif self.memory is None:
            (home / "cgroup.subtree_control").write_text("+memory")


class Cgroup:
    """One cgroup: its members (recursively), signals to all of them, a kill that empties
    it, its memory usage and limit, and its removal."""

    def __init__(self, path: Path, version: int) -> None:
        self.path = path
        self.version = version

    def __repr__(self) -> str:
        return f"<Cgroup v{self.version} {self.path}>"

    def join(self) -> None:
        """Move the calling process in (a spawn calls it in the child before ``exec``, so the
        worker cannot start anything outside)."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def members(self) -> list[int]:
        """The pids in this cgroup and every cgroup below it (none once it is gone)."""
        pids: list[int] = []
        for directory, _, _ in os.walk(self.path):
            with contextlib.suppress(OSError):
                pids += [int(p) for p in Path(directory, "cgroup.procs").read_text().split()]
        return pids

    def signal(self, sig: int, *, skip: int | None = None) -> list[int]:
        """Send ``sig`` to every member (but ``skip``), again to any that appear meanwhile
        (a fork racing the signal); the pids signalled."""
        done: list[int] = []
        for _ in range(100):
            new = [p for p in self.members() if p not in done and p != skip]
            if not new:
                break
            for pid in new:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                done.append(pid)
        return done

    def kill(self, timeout: float = KILL_TIMEOUT) -> bool:
        """SIGKILL every member, again until none is left or ``timeout``; True once empty.
        (v2 has ``cgroup.kill``, which the kernel makes atomic against forks.)"""
        deadline = time.monotonic() + timeout
        atomic = self.path / "cgroup.kill"
        while True:
            pids = self.members()
            if not pids:
                return True
            if atomic.exists():
                with contextlib.suppress(OSError):
                    atomic.write_text("1")
            else:
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL)

    # -- memory ----------------------------------------------------------------------------
    def usage(self) -> int:
        """Bytes of memory charged to this cgroup (and those below it)."""
        name = "memory.usage_in_bytes" if self.version == 1 else "memory.current"
        return int((self.path / name).read_text())

    def limit(self, limit_bytes: int) -> None:
        """Cap the memory of everything in this cgroup, swap included (so swap cannot absorb
        what the limit refuses)."""
        if self.version == 2:
            (self.path / "memory.max").write_text(str(limit_bytes))
            with contextlib.suppress(FileNotFoundError):
                (self.path / "memory.swap.max").write_text("0")
            return
        memory, memsw = self.path / "memory.limit_in_bytes", self.path / "memory.memsw.limit_in_bytes"
        try:
            memory.write_text(str(limit_bytes))
        except OSError:  # lowering below memsw's limit first: the kernel wants memsw >= memory
            if memsw.exists():
                memsw.write_text(str(limit_bytes))
            memory.write_text(str(limit_bytes))
        if memsw.exists():
            memsw.write_text(str(limit_bytes))

    def limit_bytes(self) -> int | None:
        """The memory limit in force (None: unlimited)."""
        name = "memory.limit_in_bytes" if self.version == 1 else "memory.max"
        text = (self.path / name).read_text().strip()
        return None if text == "max" or int(text) >= 2**62 else int(text)

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer killed in this cgroup and below."""
        if self.version == 2:
            return _counter(self.path / "memory.events", "oom_kill")
        return sum(_counter(Path(d, "memory.oom_control"), "oom_kill")
                   for d, _, _ in os.walk(self.path))

    # -- the end ---------------------------------------------------------------------------
    def remove(self, timeout: float = KILL_TIMEOUT) -> bool:
        """Kill what is left and remove this cgroup and those below it (deepest first); True
        once gone."""
        self.kill(timeout)
        deadline = time.monotonic() + timeout
        while self.path.exists():
            for directory, _, _ in sorted(os.walk(self.path), key=lambda d: -len(d[0])):
                with contextlib.suppress(OSError):
                    os.rmdir(directory)
            if not self.path.exists() or time.monotonic() >= deadline:
                break
            time.sleep(POLL)
        return not self.path.exists()


def _counter(path: Path, key: str) -> int:
    with contextlib.suppress(OSError):
        found = re.search(rf"^{key} (\d+)$", path.read_text(), re.M)
        if found:
            return int(found.group(1))
    return 0


# -- finding a hierarchy -------------------------------------------------------------------

def _mounts() -> list[tuple[str, Path, str, set[str]]]:
    """(fstype, mount point, root inside the hierarchy, super options) of cgroup mounts."""
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split()
            sep = fields.index("-")
            fstype = fields[sep + 1]
            if fstype in ("cgroup", "cgroup2"):
                opts = set(fields[sep + 3].split(",")) if len(fields) > sep + 3 else set()
                found.append((fstype, Path(fields[4]), fields[3], opts))
    return found


def _own(controller: str) -> str | None:
    """This process's cgroup path in the v1 hierarchy of ``controller`` ("" : the v2 one)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if (controller == "" and controllers == "") or controller in controllers.split(","):
                return path
    return None


def _inside(point: Path, root: str, own: str | None) -> Path:
    """The directory of cgroup ``own`` under a mount of the hierarchy's ``root``."""
    if own is None or not own.startswith(root):
        return point
    candidate = point / os.path.relpath(own, root)
    return candidate if candidate.is_dir() else point


def _try_home(base: Path) -> str | None:
    """Why no cgroup can be made under ``base`` (None: one can)."""
    home = base / f"{PREFIX}{os.getpid()}"
    if home.is_dir():
        return None
    try:
        home.mkdir()
        home.rmdir()
    except OSError as exc:
        return f"cannot make a cgroup in {base}: {exc.strerror}"
    return None


def find(version: int) -> Hierarchy | str:
    """The cgroup ``version`` hierarchy this harness can use, or why it cannot."""
    if version == 2:
        mounts = [m for m in _mounts() if m[0] == "cgroup2"]
    else:
        mounts = [m for m in _mounts() if m[0] == "cgroup" and "memory" in m[3]]
    if not mounts:
        return ("no cgroup v2 hierarchy is mounted" if version == 2
                else "no cgroup v1 memory hierarchy is mounted")
    _, point, root, _ = mounts[0]
    base = _inside(point, root, _own("" if version == 2 else "memory"))
    if version == 1:
        why = _try_home(base)
        return f"cgroup v1: {why}" if why else Hierarchy(1, base)
    memory: str | None = None
    if "memory" not in _read(base / "cgroup.controllers").split():
        memory = f"cgroup v2: the memory controller is not available in {base}"
    elif "memory" not in _read(base / "cgroup.subtree_control").split():
        try:
            (base / "cgroup.subtree_control").write_text("+memory")
        except OSError as exc:
            parent = base.parent
            if base != point and _try_home(parent) is None:
                base = parent  # its subtree has memory: ours is in its cgroup.controllers
            else:
                memory = (f"cgroup v2: cannot enable the memory controller below {base}: "
                          f"{exc.strerror} (a cgroup that holds processes cannot)")
    why = _try_home(base)
    return f"cgroup v2: {why}" if why else Hierarchy(2, base, memory)


def _read(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text()
    return ""


_found: dict[int, tuple[Hierarchy | None, str | None]] = {}  # pid -> (hierarchy, why not)


def _detect() -> tuple[Hierarchy | None, str | None]:
    pid = os.getpid()
    if pid not in _found:
        v2, v1 = find(2), find(1)
        if isinstance(v2, Hierarchy) and v2.memory is None:
            _found[pid] = (v2, None)
        elif isinstance(v1, Hierarchy):
            _found[pid] = (v1, None)
        elif isinstance(v2, Hierarchy):
            _found[pid] = (v2, None)
        else:
            _found[pid] = (None, f"{v2}; {v1}")
    return _found[pid]


def hierarchy() -> Hierarchy | None:
    """The best hierarchy this harness can use (found once per process), or None."""
    return _detect()[0]


def unavailable() -> str | None:
    """Why the harness cannot make cgroups here (None: it can)."""
    found, why = _detect()
    return None if found is not None else f"{why}. Fix: {HOW}"


def memory_limit_unavailable() -> str | None:
    """Why the harness cannot impose memory limits on workers here (None: it can)."""
    found, why = _detect()
    if found is None:
        return f"no cgroup can be made ({why}). Fix: {HOW}"
    return None if found.memory is None else f"{found.memory}. Fix: {HOW}"


# -- leftovers -----------------------------------------------------------------------------

_homes: dict[Path, int] = {}  # directories this process made -> their cgroup version


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(found: Hierarchy | None = None) -> int:
    """Kill what is left in the directories of harnesses that no longer run, and remove them;
    how many were removed."""
    found = found or hierarchy()
    if found is None:
        return 0
    removed = 0
    for entry in found.base.glob(f"{PREFIX}*"):
        pid = entry.name[len(PREFIX):]
        if pid.isdigit() and not _alive(int(pid)) and Cgroup(entry, found.version).remove():
            removed += 1
    return removed


def remove_homes() -> None:
    """Remove this process's directories and whatever is still in them (at exit)."""
    for home, version in list(_homes.items()):
        if home.name == f"{PREFIX}{os.getpid()}":  # not a forked copy's parent's
            Cgroup(home, version).remove(timeout=1.0)
            del _homes[home]


atexit.register(remove_homes)
