"""A worker profile as a user meets it: scenarios needing what the worker lacks are skipped as
not applicable, the run's policy is the declared one, and a scenario that needs another value
than the declared one does not run."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

NEEDS = """
import pytest

@pytest.mark.jobchaos_needs("locks")
def test_locks(): pass

@pytest.mark.jobchaos_needs("dedupe", "retries")
def test_retries(): pass

@pytest.mark.jobchaos_needs("dedupe", "warm_shutdown")
def test_dedupe(): pass

def test_plain(): pass
"""


def profile(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "worker.toml"
    path.write_text(text)
    return path


def test_a_scenario_needing_a_feature_the_worker_lacks_is_not_applicable(
        pytester: pytest.Pytester, tmp_path: Path):
    path = profile(tmp_path, "[policy]\nmax_tries = 1\n[features]\nlocks = false\n")
    pytester.makepyfile(NEEDS)
    result = pytester.runpytest_subprocess("-p", "no:xdist", "-rs",
                                           f"--jobchaos-worker-profile={path}")
    result.assert_outcomes(passed=2, skipped=2)
    result.stdout.fnmatch_lines_random([
        f"SKIPPED * not applicable: locks (the worker profile {path} declares no locks)",
        f"SKIPPED * not applicable: retries (the worker profile {path} declares no retries)"])
    # Without a profile every feature is assumed present: all four run.
    pytester.runpytest_subprocess("-p", "no:xdist").assert_outcomes(passed=4)


def test_a_marker_naming_no_feature_is_a_usage_error(pytester: pytest.Pytester):
    pytester.makepyfile("import pytest\n\n@pytest.mark.jobchaos_needs('lock')\n"
                        "def test_x(): pass\n")
    result = pytester.runpytest_subprocess("-p", "no:xdist")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*jobchaos_needs('lock') on *test_x: no feature named lock; "
                                 "known: retries, dedupe, locks*"])


def test_the_run_follows_the_declared_policy(pytester: pytest.Pytester, tmp_path: Path):
    path = profile(tmp_path, "[policy]\nmax_tries = 1\nlease = 2.5\ntimeout_granularity = 1\n")
    pytester.makepyfile(
        """
        def test_declared(chaos):
            assert (chaos.policy.max_tries, chaos.policy.lease) == (1, 2.5)
            checkers = chaos.policy.for_checkers()
            assert (checkers.max_tries, checkers.timeout_granularity) == (1, 1.0)
            chaos.prefer(lease=0.8, backoff_base=0.4)  # a preference: the declared lease holds
            assert (chaos.policy.lease, chaos.policy.backoff_base) == (2.5, 0.4)
            chaos.tune(lease=2.5)  # the declared value itself is no clash

        def test_needs_another_lease(chaos):
            chaos.tune(job_timeout=3.0, lease=0.8)
            raise AssertionError("a scenario needing another lease than the declared one ran")
        """)
    result = pytester.runpytest_subprocess("-p", "no:xdist", "-rs",
                                           f"--jobchaos-worker-profile={path}")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines([
        f"SKIPPED * not applicable: lease (this scenario runs its worker with lease = 0.8; the "
        f"worker profile {path} declares lease = 2.5)"])
