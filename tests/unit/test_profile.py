"""Worker profiles: what a good one declares, and one clear error for each bad one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.config import ConfigError, resolve
from harness.profile import (
    DEFAULT_PROFILE,
    FEATURES,
    DeclaredPolicy,
    ProfileError,
    load,
    not_applicable,
)
from harness.run.policy import SCENARIO_POLICY

RQ_LIKE = """\
[policy]
max_tries = 1
job_timeout = 2.0
timeout_granularity = 1
[features]
locks = false
"""


def write(tmp_path: Path, text: str, name: str = "worker.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_toml_profile_declares_policy_and_missing_features(tmp_path: Path) -> None:
    path = write(tmp_path, RQ_LIKE)
    profile = load(path)
    assert profile.policy == DeclaredPolicy(max_tries=1, job_timeout=2.0, timeout_granularity=1.0)
    # locks declared absent; retries absent because max_tries = 1; the rest assumed present.
    assert profile.missing == ("retries", "locks")
    assert profile.source == str(path)
    policy = profile.apply(SCENARIO_POLICY)
    assert (policy.max_tries, policy.job_timeout, policy.timeout_granularity) == (1, 2.0, 1.0)
    assert policy.lease == SCENARIO_POLICY.lease  # not declared: the scenario's value


def test_the_checkers_judge_against_the_declared_values(tmp_path: Path) -> None:
    profile = load(write(tmp_path, "[policy]\nshutdown_grace = 5.0\nmax_tries = 2\n"
                                   "job_timeout = 1.5\ntimeout_granularity = 1.0\n"))
    checkers = profile.apply(SCENARIO_POLICY).for_checkers()
    assert (checkers.shutdown_grace, checkers.max_tries) == (5.0, 2)  # slow_shutdown, tries
    assert (checkers.enforced_timeout_s, checkers.timeout_bound_s) == (2.0, 3.0)  # overran


def test_a_json_profile_reads_the_same(tmp_path: Path) -> None:
    body = {"policy": {"max_tries": 1, "job_timeout": 2.0, "timeout_granularity": 1},
            "features": {"locks": False}}
    from_json = load(write(tmp_path, json.dumps(body), "worker.json"))
    from_toml = load(write(tmp_path, RQ_LIKE))
    assert (from_json.policy, from_json.features) == (from_toml.policy, from_toml.features)


def test_retries_false_means_one_try(tmp_path: Path) -> None:
    profile = load(write(tmp_path, "[features]\nretries = false\n"))
    assert profile.policy.max_tries == 1 and not profile.has("retries")


def test_the_default_profile_has_every_feature_and_changes_no_value() -> None:
    assert DEFAULT_PROFILE.missing == () and set(DEFAULT_PROFILE.features) == set(FEATURES)
    assert DEFAULT_PROFILE.apply(SCENARIO_POLICY) == SCENARIO_POLICY


def test_an_empty_profile_is_the_default(tmp_path: Path) -> None:
    profile = load(write(tmp_path, ""))
    assert (profile.policy, profile.features) == (DEFAULT_PROFILE.policy,
                                                  DEFAULT_PROFILE.features)


# (file text, words the problem must contain, words the fix must contain)
BAD = {
    "unknown section": ("[worker]\nname = 'rq'\n", ["unknown section", "'worker'"],
                        ["[policy] and [features]", "remove worker"]),
    "unknown policy key": ("[policy]\ntimeout = 2\n", ["[policy] timeout"],
                           ["job_timeout", "remove timeout"]),
    "unknown feature": ("[features]\nlock = false\n", ["[features] lock"], ["locks"]),
    "feature not a bool": ("[features]\nlocks = 'no'\n", ["[features] locks", "'no'"],
                           ["locks = false", "unique_key"]),
    "number as text": ("[policy]\njob_timeout = '2s'\n", ["[policy] job_timeout", "'2s'"],
                       ["job_timeout to a number"]),
    "bool as number": ("[policy]\nlease = true\n", ["[policy] lease"], ["lease to a number"]),
    "fraction of a try": ("[policy]\nmax_tries = 1.5\n", ["max_tries = 1.5", "whole number"],
                          ["whole number"]),
    "no tries": ("[policy]\nmax_tries = 0\n", ["max_tries = 0", "impossible"],
                 [">= 1", "attempts in all"]),
    "no timeout": ("[policy]\njob_timeout = 0\n", ["job_timeout = 0", "impossible"],
                   ["> 0"]),
    "negative grace": ("[policy]\nshutdown_grace = -1\n", ["shutdown_grace = -1"], [">= 0"]),
    "infinite lease": ("[policy]\nlease = inf\n", ["lease = inf"], ["a number"]),
    "policy not a table": ("policy = 3\n", ["policy must be a table"], ["[policy]"]),
    "retries off, three tries": ("[policy]\nmax_tries = 3\n[features]\nretries = false\n",
                                 ["retries = false but max_tries = 3"], ["max_tries = 1"]),
    "retries on, one try": ("[policy]\nmax_tries = 1\n[features]\nretries = true\n",
                            ["retries = true but max_tries = 1"], ["retries = false"]),
    "not TOML": ("[policy\n", ["not valid TOML"], ["TOML syntax"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_each_bad_profile_is_one_error_naming_the_file_the_key_and_the_fix(
        tmp_path: Path, case: str) -> None:
    text, problem, fix = BAD[case]
    path = write(tmp_path, text)
    with pytest.raises(ProfileError) as err:
        load(path)
    assert str(path) in str(err.value)
    for words in problem:
        assert words in str(err.value), str(err.value)
    for words in fix:
        assert words in err.value.fix, err.value.fix


@pytest.mark.parametrize(("name", "text", "problem", "fix"), [
    ("worker.yaml", "policy: {}", "must be a .toml or .json file", "rename"),
    ("worker.json", "{nope", "not valid JSON", "JSON syntax"),
    ("worker.json", "[1, 2]", "expected an object", '{"policy"'),
    ("missing.toml", None, "cannot read it", "rootdir"),
])
def test_bad_files_are_one_error(tmp_path: Path, name: str, text: str | None, problem: str,
                                 fix: str) -> None:
    path = write(tmp_path, text, name) if text is not None else tmp_path / name
    with pytest.raises(ProfileError) as err:
        load(path)
    assert problem in str(err.value) and str(path) in str(err.value)
    assert fix in err.value.fix


def _resolve(tmp_path: Path, **env: str):
    return resolve(lambda name: None, lambda name: None, env, rootdir=tmp_path)


def test_the_setting_loads_the_profile_once_relative_to_the_rootdir(tmp_path: Path) -> None:
    write(tmp_path, RQ_LIKE)
    cfg = _resolve(tmp_path, JOBCHAOS_WORKER_PROFILE="worker.toml")
    assert cfg.worker_profile is not None and cfg.worker_profile.missing == ("retries", "locks")
    assert cfg.sources["worker_profile"] == "env JOBCHAOS_WORKER_PROFILE"
    assert _resolve(tmp_path).worker_profile is None


def test_a_bad_profile_is_a_setting_error_with_one_fix(tmp_path: Path) -> None:
    write(tmp_path, "[policy]\nmax_tries = 0\n")
    with pytest.raises(ConfigError) as err:
        _resolve(tmp_path, JOBCHAOS_WORKER_PROFILE="worker.toml")
    message = str(err.value)
    assert message.startswith("worker_profile: 'worker.toml' (from env JOBCHAOS_WORKER_PROFILE)")
    assert str(tmp_path / "worker.toml") in message and "max_tries = 0" in message
    assert message.count("Fix:") == 1 and "Fix: set max_tries to a whole number >= 1" in message


def test_not_applicable_names_the_feature_and_the_profile(tmp_path: Path) -> None:
    path = write(tmp_path, RQ_LIKE)
    profile = load(path)
    never = lambda: None  # noqa: E731  (the harness can impose a memory limit)
    assert not_applicable(profile, ["dedupe", "warm_shutdown"], never) is None
    assert not_applicable(profile, ["dedupe", "locks"], never) == (
        f"not applicable: locks (the worker profile {path} declares no locks)")
    assert not_applicable(profile, ["retries"], never) == (
        f"not applicable: retries (the worker profile {path} declares no retries)")
    with pytest.raises(KeyError):
        not_applicable(profile, ["lock"], never)


def test_memory_limit_applies_when_declared_or_imposed_by_the_harness(tmp_path: Path) -> None:
    path = write(tmp_path, "[features]\nmemory_limit = false\n")
    lacking = load(path)
    assert not_applicable(lacking, ["memory_limit"], lambda: None) is None
    assert not_applicable(lacking, ["memory_limit"], lambda: "no cgroup v2 here") == (
        f"not applicable: memory_limit (the worker profile {path} declares no memory_limit, "
        "and the harness cannot impose one: no cgroup v2 here)")
    assert not_applicable(DEFAULT_PROFILE, ["memory_limit"], lambda: "no cgroups") is None


def test_a_declared_value_clashes_with_a_scenario_that_needs_another(tmp_path: Path) -> None:
    profile = load(write(tmp_path, "[policy]\nlease = 5.0\n"))
    policy = profile.apply(SCENARIO_POLICY)
    assert profile.clashes({"lease": 0.8, "job_timeout": 3.0}, policy) == {"lease": (0.8, 5.0)}
    assert profile.clashes({"lease": 5.0}, policy) == {}  # the same value: no clash
    assert DEFAULT_PROFILE.clashes({"lease": 0.8}, SCENARIO_POLICY) == {}
