"""Property-based fault schedules: Hypothesis generates whole plans (jobs of several shapes,
timed kills, SIGTERMs, pauses, link faults and re-dispatches), plays each on a fresh run, and
checks the history.

Guards against the failures nobody thought to script: combinations and timings of crashes,
deploys, freezes and link faults. A failure is believed only if the same plan fails twice (a
live system is not deterministic); it is then shrunk, each candidate again played twice, and
the minimal plan is printed with the one command that replays it (harness/search.py).
"""

from __future__ import annotations

import pytest

from harness.profile import not_applicable
from harness.run import RunPolicy
from harness.search import ALL_SHAPES, FAST_SHAPES, SEARCH_POLICY, Search, UndecidedRun, plans
from harness.services.cgroups import memory_limit_unavailable

EXAMPLES = {"pr": 3, "nightly": 25}  # generated plans per run
SHRINK_BUDGET = {"pr": 8, "nightly": 24}  # shrink candidates per failure
SHAPES = {"pr": FAST_SHAPES, "nightly": ALL_SHAPES}
MAX_JOBS = 12  # more jobs make each play slower and a failure no likelier to show


def test_fault_schedules(chaos_factory, jobchaos_runs, jobchaos_profile, jobchaos_seed,
                         jobchaos_artifacts, jobchaos_worker_profile):
    # What the worker declares: its policy, and only the faults and jobs it has features for.
    declared = jobchaos_worker_profile
    search = Search(chaos_factory, policy=declared.apply(SEARCH_POLICY))
    profile = jobchaos_profile.name
    hogs = not_applicable(declared, ["memory_limit"], memory_limit_unavailable) is None
    shapes = [s for s in SHAPES[profile] if s != "hog" or hogs]
    try:
        if jobchaos_runs.replay is not None:
            search.policy = RunPolicy.from_dict(jobchaos_runs.replay.policy)
            replayed = jobchaos_runs.replay.plan
            if search.fails(replayed):
                pytest.fail(search.report(replayed, f"the replayed plan failed twice (seed "
                                                    f"{jobchaos_seed})"), pytrace=False)
            return
        strategy = plans(policy=search.policy, max_jobs=min(jobchaos_profile.jobs, MAX_JOBS),
                         max_events=6, horizon=2.0, workers=jobchaos_profile.workers,
                         shapes=shapes, features=declared.features)
        failing = search.find(strategy, examples=EXAMPLES[profile], seed_=jobchaos_seed)
        if failing is None:
            return
        minimal, tried = search.shrink(failing, budget=SHRINK_BUDGET[profile])
    except UndecidedRun as exc:
        pytest.fail(f"a generated plan could not be judged (UNKNOWN is not a pass):\n{exc}",
                    pytrace=False)
    finally:
        search.save_figures(jobchaos_artifacts / "search.json")
    pytest.fail(search.report(minimal, f"a fault schedule failed twice (seed {jobchaos_seed}), "
                                       f"shrunk from {len(failing.events)} to "
                                       f"{len(minimal.events)} events in {tried} candidates"),
                pytrace=False)
