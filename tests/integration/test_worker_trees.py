"""Each worker process in a cgroup the harness makes: a kill reaches every process the worker
started (also a job process that left its process group, as RQ's work horse does), a memory
limit holds whatever the worker does, and no cgroup outlives the pool or a harness that died.

Real processes and real cgroups; a case whose cgroup hierarchy is not available here is
skipped with the reason."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from harness.contract import Connections, alloc, db_write, job, sleep
from harness.services import cgroups
from harness.services.cgroups import Hierarchy
from harness.services.pool import WorkerPool
from harness.services.workers import HEADROOM, REFERENCE_WORKER
from reference_worker.testing import Tables, policy, send, wait_until

HORSE = (sys.executable, str(Path(__file__).parent / "workers" / "horse_worker.py"))
ROOT = Path(__file__).resolve().parents[2]


def _where(name: str) -> Hierarchy | None:
    """The hierarchy a case runs in: the one detected, v2 itself, or none (psutil)."""
    if name == "none":
        return None
    found = cgroups.hierarchy() if name == "detected" else cgroups.find(2)
    if not isinstance(found, Hierarchy):
        pytest.skip(f"no cgroup here: {found or cgroups.unavailable()}")
    return found


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def strays() -> Iterator[list[psutil.Process]]:
    """Processes a test saw; any still alive at its end are killed (a failed kill test
    leaves its job process running)."""
    seen: list[psutil.Process] = []
    yield seen
    for p in seen:
        if _alive(p):
            p.kill()


@pytest.mark.parametrize("where", ["detected", "v2", "none"])
def test_a_kill_reaches_the_job_process_that_left_the_group(
        where: str, chaos_connections: Connections, jobchaos_artifacts: Path, tables: Tables,
        strays: list[psutil.Process]) -> None:
    hierarchy = _where(where)
    with WorkerPool(chaos_connections, policy(), size=1, argv=HORSE, logdir=jobchaos_artifacts,
                    hierarchy=hierarchy) as pool:
        w = pool[0]
        assert (w.cgroup is None) == (hierarchy is None)
        send(chaos_connections, job("slow", sleep(3.0), db_write()))
        assert w.pid is not None
        [horse] = wait_until(lambda: psutil.Process(w.pid).children(), timeout=10,
                             what="the worker's horse")
        strays.append(horse)
        wait_until(lambda: os.getpgid(horse.pid) != w.pid, timeout=5,
                   what="the horse to leave the worker's process group")
        w.kill()
        wait_until(lambda: not _alive(horse), timeout=2,
                   what="the horse to die with its worker (it left the process group)")
    assert tables.effects("slow") == [], "the job went on after its worker was killed"


def test_no_cgroup_outlives_its_worker(chaos_connections: Connections,
                                       jobchaos_artifacts: Path) -> None:
    hierarchy = _where("detected")
    assert hierarchy is not None
    with WorkerPool(chaos_connections, policy(), size=2, logdir=jobchaos_artifacts) as pool:
        first = pool[0].cgroup
        assert first is not None and pool[0].pid in first.members()
        pool[0].restart()  # killed: the reference worker's own cgroup inside is left behind
        assert not first.path.exists()
        groups = [w.cgroup.path for w in pool.workers if w.cgroup is not None]
        assert len(groups) == 2 and all(g.is_dir() for g in groups)
    assert not any(g.exists() for g in groups)
    left = [d for d in hierarchy.home.iterdir() if d.is_dir()] if hierarchy.home.exists() else []
    assert left == []


DIES = """
import os, sys, time
from harness import procs
from harness.services import cgroups
group = cgroups.hierarchy().make("worker-1-1")
script = "import os, time\\nif os.fork() == 0:\\n    os.setsid()\\ntime.sleep(60)"
procs.spawn([sys.executable, "-c", script], join=group.join)
print(group.path, flush=True)
time.sleep(60)
"""


def test_the_cgroups_of_a_killed_harness_are_swept(strays: list[psutil.Process]) -> None:
    hierarchy = _where("detected")
    assert hierarchy is not None
    harness = subprocess.Popen([sys.executable, "-c", DIES], stdout=subprocess.PIPE, text=True,
                               cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert harness.stdout is not None
    group = cgroups.Cgroup(Path(harness.stdout.readline().strip()), hierarchy.version)
    pids = wait_until(lambda: len(group.members()) == 2 and group.members(), timeout=10,
                      what="the harness's worker and its grandchild in their cgroup")
    strays.extend(psutil.Process(p) for p in pids)
    harness.send_signal(signal.SIGKILL)
    harness.wait(10)
    assert group.path.parent.name == f"{cgroups.PREFIX}{harness.pid}"
    assert group.path.exists(), "a SIGKILLed harness cannot clean up"
    assert cgroups.sweep_stale(hierarchy) >= 1
    assert not group.path.parent.exists()
    wait_until(lambda: not any(_alive(p) for p in strays), timeout=5,
               what="the processes left in the swept cgroup to die")


@pytest.mark.parametrize("worker", ["reference-unguarded", "horse"])
def test_the_harness_memory_limit_oom_kills_a_job_of_any_worker(
        worker: str, chaos_connections: Connections, jobchaos_artifacts: Path,
        tables: Tables) -> None:
    why = cgroups.memory_limit_unavailable()
    if why is not None:
        pytest.skip(f"the harness cannot impose memory limits here: {why}")
    argv, env = ((REFERENCE_WORKER, {"REFERENCE_WORKER_MEMORY": "off"}) if worker != "horse"
                 else (HORSE, {}))
    p = policy(memory_limit_mb=64, max_tries=1, job_timeout=10.0, lease=12.0)
    with WorkerPool(chaos_connections, p, size=1, argv=argv, logdir=jobchaos_artifacts,
                    extra_env=env) as pool:
        w = pool[0]
        if worker != "horse":
            wait_until(lambda: "memory 64 MB by off" in w.log_path.read_text(), timeout=10,
                       what="the worker to start without a memory guard of its own")
        [limit] = pool.impose_memory_limits(64)
        assert limit is not None and w.cgroup is not None and w.baseline is not None
        assert limit == w.baseline + 64 * cgroups.MIB + HEADROOM
        assert w.cgroup.limit_bytes() == limit
        send(chaos_connections, job("hog", alloc(128, hold=1.0)), job("modest", alloc(16),
                                                                       db_write()))
        tables.wait_terminal(["hog", "modest"], timeout=30)
        assert w.cgroup.oom_kills() >= 1, "the kernel must have killed the job in our cgroup"
        assert w.running(), "the OOM killer picks the job, not the worker"
        w.restart()
        assert w.cgroup is not None and w.cgroup.limit_bytes() == limit, (
            "a restarted worker runs under the same limit")
    [hog] = tables.outcomes("hog")
    assert (hog.status, hog.reason) == ("dead", "killed")
    assert "SIGKILL" in (hog.detail or "") or "signal 9" in (hog.detail or "")
    assert tables.terminal("modest").status == "completed"


def test_the_memory_scenario_oom_kills_through_the_harness_cgroup(tmp_path: Path) -> None:
    """The scenario as a user runs it, on a worker with no memory limit of its own: only the
    limit the harness imposes on the worker's cgroup can stop the hog."""
    why = cgroups.memory_limit_unavailable()
    if why is not None:
        pytest.skip(f"the harness cannot impose memory limits here: {why}")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist",
         "-p", "no:randomly", f"--jobchaos-artifacts-dir={tmp_path}",
         "scenarios/test_memory.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
        env={**os.environ, "REFERENCE_WORKER_MEMORY": "off"})
    assert done.returncode == 0, done.stdout[-3000:]
    logs = "".join(log.read_text() for log in tmp_path.rglob("worker-*.log"))
    assert "by off" in logs and "by cgroup" not in logs, "the worker limited nothing itself"
    history = next(tmp_path.rglob("history.jsonl")).read_text()
    hog = [line for line in history.splitlines() if '"f":"outcome"' in line
           and '"job":"hog"' in line]
    assert hog and all('"reason":"killed"' in line for line in hog), hog
    ends = [line for line in logs.splitlines() if "hog: attempt" in line and "started" not in line]
    assert len(ends) == len(hog) and all("killed by signal SIGKILL" in line for line in ends), ends


def test_memory_limit_unavailable_is_none_only_where_a_limit_holds() -> None:
    why = cgroups.memory_limit_unavailable()
    found = cgroups.hierarchy()
    if why is not None:
        assert found is None or found.memory is not None, why
        return
    assert found is not None
    group = found.make("probe")
    try:
        group.limit(64 * cgroups.MIB)
        assert group.limit_bytes() == 64 * cgroups.MIB
    finally:
        assert group.remove()


def test_a_v2_hierarchy_without_the_memory_controller_kills_but_cannot_limit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    v2 = cgroups.find(2)
    if not isinstance(v2, Hierarchy) or v2.memory is None:
        pytest.skip(f"needs a cgroup v2 hierarchy without the memory controller: {v2}")
    only_v2 = [m for m in cgroups._mounts() if m[0] == "cgroup2"]
    monkeypatch.setattr(cgroups, "_mounts", lambda: only_v2)
    monkeypatch.setattr(cgroups, "_found", {})
    assert cgroups.hierarchy() == v2
    assert cgroups.unavailable() is None
    why = cgroups.memory_limit_unavailable()
    assert why is not None and "the memory controller is not available" in why
