"""The zombie worker (bug switch ``zombie_worker``): back from a cut or a pause, it records its
outcome and settles without checking it still owns the lease. Each scenario that guards
against it (scenarios/test_worker_cut_off.py, scenarios/test_pause.py) is played with the
switch on, and its verdict must name the anomaly the bug makes."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from types import ModuleType

from harness.checkers import Validity

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def scenario(name: str) -> ModuleType:
    """A scenario module, loaded from its file (the scenarios directory is not a package)."""
    spec = importlib.util.spec_from_file_location(f"jobchaos_scenario_{name}",
                                                  SCENARIOS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def with_bug(chaos, name: str) -> None:
    w = chaos.world
    w.worker = dataclasses.replace(w.worker, env={**w.worker.env, "REFERENCE_WORKER_BUGS": name})


def anomalies(judgement, kind: str) -> list:
    return [a for a in judgement.result.anomalies if a.kind == kind]


def test_cut_off_zombie_completes_the_rerun_job_again(chaos, jobchaos_profile):
    s = scenario("test_worker_cut_off")
    chaos.tune(lease=s.LEASE, job_timeout=s.TIMEOUT)
    with_bug(chaos, "zombie_worker")
    judgement = chaos.play(s.cut_off_plan(jobchaos_profile.workers, chaos.policy.lease))
    assert judgement.result.validity is Validity.INVALID, judgement.text
    cut = s.struck(judgement.history, "down")
    held = cut["inflight"][0]["job"]
    dup = anomalies(judgement, "duplicated")
    assert [a.job for a in dup] == [held], judgement.text
    assert dup[0].detail == "completed reported 2 times"


def test_paused_zombie_puts_the_finished_job_back(chaos, jobchaos_profile):
    s = scenario("test_pause")
    chaos.tune(lease=s.LEASE, job_timeout=s.TIMEOUT)
    with_bug(chaos, "zombie_worker")
    judgement = chaos.play(s.pause_plan(jobchaos_profile.workers, chaos.policy.lease))
    assert judgement.result.validity is Validity.INVALID, judgement.text
    h = judgement.history
    held = next(h.values[i]["params"]["inflight"][0]["job"] for i in h.indices("inject")
                if h.values[i]["kind"] == "pause")
    regressed = anomalies(judgement, "regressed")
    assert {a.job for a in regressed} == {held}, judgement.text
    # The late row itself, whatever the probe still sees of the requeued job (it may be
    # scheduled again, or already dropped by the ledger as finished).
    late = [a for a in regressed if a.detail.startswith("reported completed, then retrying")]
    assert len(late) == 1, judgement.text
    first, then = (h.values[i] for i in late[0].ops)
    assert first["status"] == "completed" and then["status"] == "retrying"
    assert then["worker"] != first["worker"], "the paused worker wrote the late row"
