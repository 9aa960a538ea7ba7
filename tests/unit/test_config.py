"""Settings resolve command line > env > ini > default, and bad values name their fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import SETTINGS, Config, ConfigError, resolve


def _resolve(options=None, env=None, ini=None) -> Config:
    options, env, ini = options or {}, env or {}, ini or {}
    return resolve(options.get, ini.get, env, rootdir=Path("/project"))


def test_defaults():
    cfg = _resolve()
    assert cfg.redis_url is None and cfg.external == ()
    assert cfg.start_timeout == 30.0
    assert cfg.pg_user == "jobchaos"
    assert cfg.artifacts_dir == Path("/project/jobchaos-artifacts")
    assert cfg.sources["start_timeout"] == "default"
    assert cfg.ready_timeout == 30.0


def test_ready_timeout_from_env_and_its_bad_value():
    assert _resolve(env={"JOBCHAOS_READY_TIMEOUT": "2.5"}).ready_timeout == 2.5
    with pytest.raises(ConfigError, match=r"ready_timeout: '0' .* Fix: set "
                                          r"--jobchaos-ready-timeout / JOBCHAOS_READY_TIMEOUT"):
        _resolve(ini={"jobchaos_ready_timeout": "0"})


def test_command_line_beats_env_beats_ini():
    url = "redis://127.0.0.1:6379/0"
    cfg = _resolve(options={"redis_url": url}, env={"JOBCHAOS_REDIS_URL": "redis://env:1/0"},
                   ini={"jobchaos_redis_url": "redis://ini:1/0"})
    assert (cfg.redis_url, cfg.sources["redis_url"]) == (url, "--jobchaos-redis-url")
    cfg = _resolve(env={"JOBCHAOS_REDIS_URL": "redis://env:1/0"},
                   ini={"jobchaos_redis_url": "redis://ini:1/0"})
    assert (cfg.redis_url, cfg.sources["redis_url"]) == ("redis://env:1/0", "env JOBCHAOS_REDIS_URL")
    cfg = _resolve(ini={"jobchaos_redis_url": "redis://ini:1/0"})
    assert (cfg.redis_url, cfg.sources["redis_url"]) == ("redis://ini:1/0", "ini jobchaos_redis_url")


def test_toxiproxy_url_alias_and_precedence():
    assert _resolve(env={"TOXIPROXY_URL": "http://127.0.0.1:8474"}).toxiproxy_url == \
        "http://127.0.0.1:8474"
    cfg = _resolve(env={"TOXIPROXY_URL": "http://a:1", "JOBCHAOS_TOXIPROXY_URL": "http://b:2"})
    assert cfg.toxiproxy_url == "http://b:2"


def test_external_services_listed():
    cfg = _resolve(options={"database_url": "postgresql://u@h:5432/db", "smtp": "h:25"})
    assert cfg.external == ("postgres", "smtp")
    assert cfg.smtp == ("h", 25)


@pytest.mark.parametrize(
    ("where", "name", "value", "expected"),
    [
        ("options", "smtp", "localhost", "HOST:PORT"),
        ("env", "JOBCHAOS_SMTP", "h:99999", "HOST:PORT"),
        ("options", "redis_url", "http://x:1", "redis://"),
        ("ini", "jobchaos_database_url", "mysql://x/db", "postgresql://"),
        ("env", "JOBCHAOS_START_TIMEOUT", "-1", "greater than 0"),
        ("env", "JOBCHAOS_START_TIMEOUT", "soon", "could not convert"),
        ("env", "JOBCHAOS_DISPATCHER", "myapp.enqueue", "expected module:callable"),
        ("ini", "jobchaos_dispatcher", "myapp:enqueue()", "expected module:callable"),
    ],
)
def test_bad_values_name_the_setting_its_source_and_the_fix(where, name, value, expected):
    with pytest.raises(ConfigError) as info:
        _resolve(**{where: {name: value}})
    message = str(info.value)
    assert expected in message
    assert repr(value) in message
    assert "Fix: set --jobchaos-" in message


def test_every_setting_has_option_env_and_ini_of_one_name():
    for s in SETTINGS:
        assert s.option == "--jobchaos-" + s.name.replace("_", "-")
        assert s.env == "JOBCHAOS_" + s.name.upper()
        assert s.ini == "jobchaos_" + s.name


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        _resolve().pg_user = "root"  # type: ignore[misc]


def test_scenario_settings():
    cfg = _resolve(options={"worker_cmd": "python -m my.worker --fast", "profile": "nightly"},
                   env={"REFERENCE_WORKER_BUGS": "ack_early", "JOBCHAOS_SEED": "42"})
    assert cfg.worker_cmd == ("python", "-m", "my.worker", "--fast")
    assert (cfg.profile, cfg.seed, cfg.worker_bugs) == ("nightly", 42, "ack_early")
    with pytest.raises(ConfigError, match="expected one of pr, nightly"):
        _resolve(env={"JOBCHAOS_PROFILE": "weekly"})


def test_the_dispatcher_is_a_module_and_a_callable_in_it():
    cfg = _resolve(ini={"jobchaos_dispatcher": "myapp.chaos:Dispatch.enqueue"})
    assert (cfg.dispatcher, cfg.sources["dispatcher"]) == ("myapp.chaos:Dispatch.enqueue",
                                                          "ini jobchaos_dispatcher")
    assert _resolve().dispatcher is None
