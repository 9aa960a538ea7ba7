"""A worker's declared capabilities and policy: what the worker under test really does.

A worker profile is a small TOML or JSON file (setting ``worker_profile``)::

    [policy]              # the worker's effective policy, where it is fixed in the worker
    max_tries = 1
    job_timeout = 2.0
    timeout_granularity = 1.0
    [features]            # what the worker has; a feature not named here is assumed present
    retries = false
    locks = false

Declared policy values replace the scenario policy's (the workers get them as ``CHAOS_*``
and the checkers judge against them); a scenario that needs a feature the worker lacks is
skipped as not applicable (``@pytest.mark.jobchaos_needs``). docs/contract.md, "Declaring
your worker", is the prose version.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, get_args

if TYPE_CHECKING:
    from harness.run.policy import RunPolicy

Feature: TypeAlias = Literal["retries", "dedupe", "locks", "memory_limit", "warm_shutdown",
                             "cold_shutdown", "ready"]
FEATURES: Final[tuple[Feature, ...]] = get_args(Feature)

# What each feature means (error messages say it).
FEATURE_MEANING: Final[Mapping[str, str]] = {
    "retries": "a failed attempt is tried again, up to max_tries",
    "dedupe": "a job id dispatched again is not run again",
    "locks": "jobs with the same unique_key never run at the same time",
    "memory_limit": "the worker limits each job's memory itself (memory_limit_mb)",
    "warm_shutdown": "the first SIGTERM lets the job in flight finish within shutdown_grace",
    "cold_shutdown": "a second SIGTERM kills the job in flight at once and gives it back",
    "ready": "each worker process writes a chaos_ready row once it consumes",
}


class ProfileError(ValueError):
    """A worker profile the harness cannot use; ``fix`` says what to change."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.fix = fix


@dataclass(frozen=True, slots=True)
class DeclaredPolicy:
    """The policy values a worker declares (None: not declared, the scenario's value holds)."""

    max_tries: int | None = None
    job_timeout: float | None = None
    backoff_base: float | None = None
    backoff_cap: float | None = None
    lease: float | None = None
    lock_ttl: float | None = None
    memory_limit_mb: int | None = None
    shutdown_grace: float | None = None
    # The worker enforces timeouts only in whole multiples of this (RQ: whole seconds); 0: exact.
    timeout_granularity: float | None = None

    def items(self) -> dict[str, float | int]:
        """The declared values, by name."""
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}


POLICY_KEYS: Final[tuple[str, ...]] = tuple(f.name for f in fields(DeclaredPolicy))
_WHOLE: Final = frozenset({"max_tries", "memory_limit_mb"})
# key -> (least value, whether the least value itself is allowed, what the key is)
_BOUNDS: Final[Mapping[str, tuple[float, bool, str]]] = {
    "max_tries": (1, True, "attempts in all, the first included"),
    "job_timeout": (0, False, "seconds one attempt may run"),
    "backoff_base": (0, True, "seconds before the first retry"),
    "backoff_cap": (0, True, "the longest wait before a retry, in seconds"),
    "lease": (0, False, "seconds a fetched job stays owned without a heartbeat"),
    "lock_ttl": (0, False, "seconds a uniqueness lock may outlive its holder"),
    "memory_limit_mb": (1, True, "MiB one attempt may use"),
    "shutdown_grace": (0, True, "seconds a warm shutdown may take"),
    "timeout_granularity": (0, True, "the step in which the worker enforces timeouts, "
                                     "in seconds (0: exact)"),
}


@dataclass(frozen=True, slots=True)
class WorkerProfile:
    """What the worker under test declares: its fixed policy values and its features."""

    policy: DeclaredPolicy = field(default_factory=DeclaredPolicy)
    features: frozenset[str] = frozenset(FEATURES)
    # Where it was declared: a file's path, or the words for the default profile.
    source: str = "default"

    def has(self, feature: str) -> bool:
        if feature not in FEATURES:
            raise KeyError(f"no worker feature named {feature!r}; known: {', '.join(FEATURES)}")
        return feature in self.features

    @property
    def missing(self) -> tuple[str, ...]:
        """The features this worker lacks, in the order of FEATURES."""
        return tuple(f for f in FEATURES if f not in self.features)

    def lacks(self, feature: str) -> str:
        """Why a scenario needing ``feature`` is not applicable: ``the worker profile P
        declares no F`` (to follow ``not applicable: F``)."""
        return f"the worker profile {self.source} declares no {feature}"

    def apply(self, policy: RunPolicy) -> RunPolicy:
        """``policy`` with the declared values in it: the policy the worker really runs."""
        return policy.tuned(**self.policy.items())

    def clashes(self, changes: Mapping[str, Any], current: RunPolicy
                ) -> dict[str, tuple[Any, Any]]:
        """The declared keys ``changes`` would set to another value than the declared one
        (``current`` is the policy in force): name -> (wanted, declared)."""
        declared = self.policy.items()
        return {k: (v, getattr(current, k)) for k, v in changes.items()
                if k in declared and v != getattr(current, k)}


# The profile when none is given: every feature, no fixed policy value (the reference worker's:
# it has every feature and reads every policy value from its env).
DEFAULT_PROFILE: Final = WorkerProfile()


def not_applicable(profile: WorkerProfile, needs: Iterable[str],
                   harness_memory_limit: Callable[[], str | None]) -> str | None:
    """Why a scenario needing the features ``needs`` is not applicable to this worker (None:
    it is). ``memory_limit`` is applicable also when the harness can impose a limit itself
    (``harness_memory_limit()`` is None; else it says why it cannot). KeyError: no such
    feature."""
    for feature in needs:
        if profile.has(feature):
            continue
        if feature == "memory_limit":
            why = harness_memory_limit()
            if why is None:
                continue
            return (f"not applicable: memory_limit ({profile.lacks(feature)}, and the harness "
                    f"cannot impose one: {why})")
        return f"not applicable: {feature} ({profile.lacks(feature)})"
    return None


def load(path: Path) -> WorkerProfile:
    """Read and check a profile (``.toml`` or ``.json``); any mistake is one
    :class:`ProfileError` naming the file, the key and the fix."""
    body = _read(path)
    where = str(path)
    unknown = sorted(set(body) - {"policy", "features"})
    if unknown:
        raise ProfileError(f"{where}: unknown section(s) {', '.join(map(repr, unknown))}",
                           f"a worker profile has only [policy] and [features]; remove "
                           f"{', '.join(unknown)} from {where}")
    policy = _policy(where, _table(where, body, "policy"))
    features = _features(where, _table(where, body, "features"))
    return _consistent(where, policy, features)


def _read(path: Path) -> dict[str, Any]:
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise ProfileError(f"{path}: a worker profile must be a .toml or .json file",
                           f"rename {path} to end in .toml or .json (by its format)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read it ({exc})",
                           "give the path of a readable worker profile (relative paths are "
                           "taken from pytest's rootdir)") from None
    try:
        body = tomllib.loads(text) if suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        kind = "TOML" if suffix == ".toml" else "JSON"
        raise ProfileError(f"{path}: not valid {kind}: {exc}",
                           f"correct the {kind} syntax of {path}") from None
    if not isinstance(body, dict):
        raise ProfileError(f"{path}: expected an object with policy and features, not "
                           f"{type(body).__name__}",
                           'write {"policy": {...}, "features": {...}}')
    return body


def _table(where: str, body: Mapping[str, Any], name: str) -> dict[str, Any]:
    table = body.get(name, {})
    if not isinstance(table, dict):
        raise ProfileError(f"{where}: {name} must be a table of keys, not "
                           f"{type(table).__name__}", f"write [{name}] with one key per line")
    return table


def _policy(where: str, table: Mapping[str, Any]) -> DeclaredPolicy:
    values: dict[str, float | int] = {}
    for key, value in table.items():
        if key not in _BOUNDS:
            raise ProfileError(f"{where}: unknown key [policy] {key}",
                               f"use one of {', '.join(POLICY_KEYS)} (or remove {key})")
        least, inclusive, meaning = _BOUNDS[key]
        whole = key in _WHOLE
        kind = "a whole number" if whole else "a number"
        ok_type = isinstance(value, int) if whole else isinstance(value, int | float)
        if isinstance(value, bool) or not ok_type or not math.isfinite(value):
            raise ProfileError(f"{where}: [policy] {key} = {value!r} is not {kind}",
                               f"set {key} to {kind} ({meaning}) or remove it")
        if value < least or (value == least and not inclusive):
            bound = f">= {least:g}" if inclusive else f"> {least:g}"
            raise ProfileError(f"{where}: [policy] {key} = {value!r} is impossible",
                               f"set {key} to {kind} {bound} ({meaning}) or remove it")
        values[key] = value if whole else float(value)
    return DeclaredPolicy(**values)  # type: ignore[arg-type]


def _features(where: str, table: Mapping[str, Any]) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for key, value in table.items():
        if key not in FEATURES:
            raise ProfileError(f"{where}: unknown feature [features] {key}",
                               f"use one of {', '.join(FEATURES)} (or remove {key})")
        if not isinstance(value, bool):
            raise ProfileError(f"{where}: [features] {key} = {value!r} is not true or false",
                               f"set {key} = true or {key} = false "
                               f"({FEATURE_MEANING[key]})")
        out[key] = value
    return out


def _consistent(where: str, policy: DeclaredPolicy, declared: Mapping[str, bool]
                ) -> WorkerProfile:
    """One try and no retries are the same fact: either implies the other; saying both ways
    at once is a mistake."""
    tries, retries = policy.max_tries, declared.get("retries")
    if retries is False and tries is not None and tries > 1:
        raise ProfileError(f"{where}: retries = false but max_tries = {tries}",
                           "a worker without retries makes one try: set max_tries = 1 (or "
                           "remove it), or set retries = true")
    if retries is True and tries == 1:
        raise ProfileError(f"{where}: retries = true but max_tries = 1",
                           "a worker that retries makes more than one try: set max_tries "
                           "to its real number of tries, or set retries = false")
    if retries is False:
        policy = replace(policy, max_tries=1)
    features = {f for f in FEATURES if declared.get(f, True)}
    if policy.max_tries == 1:
        features.discard("retries")
    return WorkerProfile(policy=policy, features=frozenset(features), source=where)
