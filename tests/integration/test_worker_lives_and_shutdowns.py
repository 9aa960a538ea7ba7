"""Worker lives as the harness records them, and the bug switches the ``workers`` checker
exists for, each caught by its scenario for the right reason (the anomaly, not just a
failure)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.collectors import life_observations
from harness.services.pool import WorkerPool
from reference_worker.testing import policy, wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_every_process_of_a_worker_is_a_life_with_its_exit(chaos_connections,
                                                           jobchaos_artifacts):
    with WorkerPool(chaos_connections, policy(), size=1, logdir=jobchaos_artifacts,
                    startup_check=0.2) as pool:
        w = pool[0]
        first_pid = w.pid
        w.kill()
        killed_at = time.time()
        before = w.log_path.read_text().count("started: queue")  # the log may be reused
        w.start()
        wait_until(lambda: w.log_path.read_text().count("started: queue") > before, timeout=10,
                   what="the restarted worker to install its SIGTERM handler")
        w.signal(signal.SIGTERM)
        wait_until(lambda: not w.running(), timeout=10, what="the worker to exit on SIGTERM")
    first, second = (o.value for o in life_observations(pool.workers))
    assert first["worker"] == second["worker"] == "worker-1"
    assert first["pid"] == first_pid and first["code"] == -signal.SIGKILL
    assert abs(first["ended"] - killed_at) < 1.0
    assert second["code"] == 0 and second["at"] >= first["ended"]
    assert second["ended"] > second["at"]


SHORTER_GRACE = "scenarios/test_graceful_shutdown.py::test_sigterm_mid_job[grace-shorter-than-job]"
ONE_CUT = ("scenarios/test_redis_link.py::"
           "test_a_worker_cut_off_resumes_consuming_after_the_heal")


@pytest.mark.parametrize(("bug", "scenario", "kind"), [
    ("shutdown_drops_job", SHORTER_GRACE, "dropped_on_shutdown"),
    ("shutdown_ignores_grace", SHORTER_GRACE, "slow_shutdown"),
    ("stop_consuming_after_link_error", ONE_CUT, "stalled"),
    ("exit_on_link_error", ONE_CUT, "exited"),
])
def test_each_worker_bug_is_caught_by_its_scenario(tmp_path: Path, bug: str, scenario: str,
                                                   kind: str):
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist",
         "-p", "no:randomly", f"--jobchaos-artifacts-dir={tmp_path}",
         f"--jobchaos-worker-bugs={bug}", scenario],
        cwd=ROOT, capture_output=True, text=True, timeout=240, env=dict(os.environ),
        check=False)
    assert done.returncode == 1, done.stdout[-3000:]
    [results] = tmp_path.rglob("results.json")
    found = json.loads(results.read_text())["checkers"]["workers"]["anomalies"]
    assert {a["kind"] for a in found} == {kind}, found
