"""Nothing the harness starts outlives it: SIGKILL, Ctrl-C and SIGTERM of pytest itself; no
process, and (after the next start-up sweep) nothing in shared memory."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.procs import OWNER_ENV

VICTIM = '''
import json, os, pathlib, time

def test_hold_the_stack(jobchaos_stack, database_url, redis_url):
    pids = [s.pid for s in jobchaos_stack.services]
    pathlib.Path(os.environ["VICTIM_PIDS"]).write_text(json.dumps(pids))
    time.sleep(120)  # held until the parent test signals this pytest process
'''


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _marked_with(owner: int) -> list[int]:
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get(OWNER_ENV) == str(owner):
                found.append(p.pid)
        except psutil.Error:
            continue
    return found


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not true within {timeout} s")
        time.sleep(0.05)


@pytest.fixture
def victim(tmp_path: Path):
    """A pytest run in a subprocess that starts a stack and then holds it."""
    (tmp_path / "test_victim.py").write_text(VICTIM)
    pids_file = tmp_path / "pids.json"
    env = dict(os.environ, VICTIM_PIDS=str(pids_file),
               JOBCHAOS_ARTIFACTS_DIR=str(tmp_path / "artifacts"))
    env.pop("PYTEST_XDIST_WORKER", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         str(tmp_path / "test_victim.py")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_for(lambda: pids_file.exists() and pids_file.read_text(), 60, "victim stack up")
        pids = json.loads(pids_file.read_text())
        assert len(pids) == 3 and all(_alive(p) for p in pids)
        yield proc, pids
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _shared_memory_of(harness_pid: int, postgres_pids: list[int]) -> tuple[set[Path], int]:
    """What the victim holds in /dev/shm (its data directory, every /dev/shm file its
    PostgreSQL processes map) and the id of its postmaster's System V segment."""
    from harness.services import shm
    from harness.services.postgres import RUNTIME_PREFIX, runtime_base

    [runtime_dir] = runtime_base().glob(f"{RUNTIME_PREFIX}{harness_pid}-*")
    held = {runtime_dir}
    for pid in postgres_pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
                path = line.split(maxsplit=5)[5:]
                if path and path[0].startswith("/dev/shm/"):
                    held.add(Path(path[0].removesuffix(" (deleted)")))
    recorded = shm.postmaster_segment(runtime_dir / "data")
    assert recorded is not None
    return held, recorded[1]


def _left_in_shared_memory(held: set[Path], shmid: int) -> list[str]:
    from harness.services import shm

    left = [str(p) for p in held if p.exists()]
    if shmid in shm.sysv_segments():
        left.append(f"System V segment {shmid}")
    return left


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT],
                         ids=["SIGKILL", "SIGTERM", "SIGINT"])
def test_no_stack_process_survives_pytest_being_signalled(victim, sig):
    from harness.services.postgres import sweep_stale_runtime_dirs

    proc, pids = victim
    postgres_children = [c.pid for c in psutil.Process(pids[1]).children(recursive=True)]
    held, shmid = _shared_memory_of(proc.pid, [pids[1], *postgres_children])
    marked = _marked_with(proc.pid)
    # redis-server rewrites its environment area for its process title, so only the others
    # can be found by the marker; every one must still be gone below.
    assert set(pids[1:]) <= set(marked)
    proc.send_signal(sig)  # the pytest process only, as a supervisor or the OOM killer would
    proc.wait(timeout=30)
    everything = set(pids) | set(postgres_children) | set(marked)
    _wait_for(lambda: not any(_alive(p) for p in everything), 5,
              f"every stack process gone after {sig.name}")
    assert _marked_with(proc.pid) == []
    if sig != signal.SIGKILL:  # a graceful end removes its shared memory itself
        assert _left_in_shared_memory(held, shmid) == []
    # After a SIGKILL only the next stack's start-up sweep can: it removes the dead harness's
    # data directory with the dynamic shared memory inside, and the postmaster's segment.
    sweep_stale_runtime_dirs()
    assert _left_in_shared_memory(held, shmid) == []


def test_orphans_of_a_dead_harness_are_swept(tmp_path):
    """A marked process whose owner is gone is found and killed by the next run's sweep."""
    from harness import procs

    dead_owner = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_owner.wait()
    env = dict(os.environ, **{OWNER_ENV: str(dead_owner.pid)})
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env,
                              start_new_session=True)
    try:
        _wait_for(lambda: orphan.pid in [p.pid for p in procs.owned_processes(None)], 5,
                  "orphan visible")
        assert procs.sweep_orphans() >= 1
        assert orphan.wait(timeout=5) is not None
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving files to another user needs root")
def test_old_style_segments_are_swept_only_while_no_process_of_their_user_lives(tmp_path):
    """``PostgreSQL.*`` segments of older versions record no owner: they go only when they
    belong to the harness's own PostgreSQL user and no process of that user is alive."""
    from harness.services import shm

    uid = 61234  # a user of ours, with no process
    assert not [p for p in psutil.process_iter(["uids"]) if p.info["uids"].real == uid]
    ours, other_users = tmp_path / "PostgreSQL.1", tmp_path / "PostgreSQL.2"
    for seg in (ours, other_users):
        seg.write_bytes(b"\0" * 64)
    os.chown(ours, uid, 0)
    holder = subprocess.Popen(["sleep", "60"], user=uid)  # a live server of that user
    try:
        _wait_for(lambda: psutil.Process(holder.pid).uids().real == uid, 5, "holder up")
        assert shm.sweep_legacy_posix_segments(uid, shm=tmp_path) == []
        assert ours.exists()
    finally:
        holder.kill()
        holder.wait()
    assert shm.sweep_legacy_posix_segments(uid, shm=tmp_path) == [ours]
    assert not ours.exists() and other_users.exists()
