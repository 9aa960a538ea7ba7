"""What a killed PostgreSQL leaves in shared memory, and the sweep that removes it.

Our servers keep everything they share inside their runtime directory
(``dynamic_shared_memory_type = mmap`` puts the dynamic segments in ``<data>/pg_dynshmem``
instead of ``/dev/shm/PostgreSQL.*``), so removing the directory of a dead harness removes
them too. Two things remain outside it:

- the 56-byte System V segment every postmaster creates as an interlock; ``postmaster.pid``
  records its key and id, so the sweep removes exactly that one once nothing is attached;
- ``/dev/shm/PostgreSQL.*`` segments of older harness versions (POSIX dynamic shared memory),
  which record no owner. They are removed only when the harness runs PostgreSQL as its own
  dedicated system user (as root), and only while no process of that user is alive: then no
  PostgreSQL can be using them.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import shutil
import time
from pathlib import Path

import psutil

SYSV_TABLE = Path("/proc/sysvipc/shm")
POSIX_PREFIX = "PostgreSQL."
_IPC_RMID = 0
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def sysv_segments() -> dict[int, tuple[int, int, int]]:
    """shmid -> (key, attached processes, owner uid), from the kernel's table."""
    try:
        lines = SYSV_TABLE.read_text().splitlines()[1:]
    except OSError:
        return {}
    table = {}
    for line in lines:
        f = line.split()
        with contextlib.suppress(ValueError, IndexError):
            table[int(f[1])] = (int(f[0]), int(f[6]), int(f[7]))
    return table


def postmaster_segment(datadir: Path) -> tuple[int, int] | None:
    """(key, shmid) of the System V segment recorded in ``postmaster.pid``, if any."""
    try:
        lines = (datadir / "postmaster.pid").read_text().splitlines()
        key, shmid = (int(x) for x in lines[6].split())
    except (OSError, ValueError, IndexError):
        return None
    return key, shmid


def remove_sysv(datadir: Path) -> bool:
    """Remove the interlock segment of the dead postmaster of ``datadir``; True if removed."""
    recorded = postmaster_segment(datadir)
    if recorded is None:
        return False
    key, shmid = recorded
    current = sysv_segments().get(shmid)
    if current is None or current[0] != key or current[1] != 0:
        return False  # gone already, the id was reused, or someone is attached
    return bool(_libc.shmctl(shmid, _IPC_RMID, None) == 0)


def sweep_dead_runtime_dirs(base: Path, prefix: str) -> list[Path]:
    """Remove ``base/<prefix><pid>-*`` of harness processes that are dead; return them."""
    removed = []
    for d in base.glob(prefix + "*"):
        owner = d.name[len(prefix):].split("-", 1)[0]
        if not owner.isdigit() or psutil.pid_exists(int(owner)):
            continue
        remove_sysv(d / "data")
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


def sweep_legacy_posix_segments(uid: int, shm: Path = Path("/dev/shm")) -> list[Path]:
    """Remove ``PostgreSQL.*`` segments owned by ``uid`` (a user that exists only to run our
    servers) when no process of that user is alive; return them."""
    scan_started = time.time()
    for p in psutil.process_iter(["uids"]):
        uids = p.info.get("uids")
        if uids is not None and uid in (uids.real, uids.effective):
            return []  # one of its servers is running: any segment may be in use
    removed = []
    for seg in shm.glob(POSIX_PREFIX + "*"):
        try:
            st = seg.stat()
            if st.st_uid != uid or st.st_ctime >= scan_started:
                continue
            seg.unlink()
        except OSError:
            continue
        removed.append(seg)
    return removed
