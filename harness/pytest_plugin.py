"""The jobchaos pytest plugin: options, the stack fixtures, cleanup, and report sections.

Loaded through the ``pytest11`` entry point. It imports almost nothing at import time, so
``pytest --help`` works anywhere; servers start only when a test asks for them.

Fixture tiers (as in pytest-postgresql): ``jobchaos_stack`` is the session's stack (one per
pytest process or pytest-xdist worker; embedded servers or, in external mode, servers someone
else runs); ``redis_url``, ``database_url``, ``smtp_sink`` and ``jobchaos_namespace`` give each
test fresh state on it; ``jobchaos_stack_factory`` starts extra stacks a test owns.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from harness.config import SETTINGS, Config, ConfigError, resolve

if TYPE_CHECKING:
    from harness.contract import Connections
    from harness.nemesis.replay import Replay
    from harness.profile import WorkerProfile
    from harness.run import ChaosRun, Profile, RunBuilder
    from harness.services.redis import Persistence
    from harness.services.stack import SinkView, Stack

CONFIG_KEY = pytest.StashKey[Config]()
STACK_KEY = pytest.StashKey["Stack"]()
WROTE_ARTIFACTS_KEY = pytest.StashKey[bool]()
BUILDER_KEY: pytest.StashKey[RunBuilder] = pytest.StashKey()
CALL_FAILED_KEY = pytest.StashKey[bool]()
REPLAY_KEY: pytest.StashKey[Replay] = pytest.StashKey()
CREATED_ARTIFACTS_KEY = pytest.StashKey[Path]()
STACK_FAILED_KEY = pytest.StashKey[BaseException]()
PLUGINS = ("harness.faults.fixtures",)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("jobchaos", "jobchaos: chaos testing of job workers")
    for s in SETTINGS:
        default = f" (default: {s.default})" if s.default else ""
        group.addoption(s.option, dest=f"jobchaos_{s.name}", default=None,
                        help=f"{s.help}{default}. Env {s.env}, ini {s.ini}.")
        parser.addini(s.ini, help=s.help, default=None)


def pytest_configure(config: pytest.Config) -> None:
    try:
        cfg = resolve(lambda name: config.getoption(f"jobchaos_{name}"), config.getini,
                      os.environ, rootdir=config.rootpath)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[CONFIG_KEY] = cfg
    if not getattr(config.option, "help", False):
        _preflight(config, cfg)  # a replay file that cannot be used is a usage error there
        if cfg.replay is not None:
            from harness.nemesis.replay import load

            config.stash[REPLAY_KEY] = load(cfg.replay)
    for plugin in PLUGINS:
        config.pluginmanager.import_plugin(plugin)
    config.addinivalue_line(
        "markers", "jobchaos_redis(persistence): each scenario run of the test gets a Redis "
        "server of its own, with persistence 'always' (append-only, fsync every write) or "
        "'none' (a restart forgets everything); for scenarios that restart Redis")
    from harness.needs import MARKER_HELP

    config.addinivalue_line("markers", MARKER_HELP)
    _raise_on_sigterm()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A scenario needing a feature the worker lacks is skipped as not applicable."""
    from harness.needs import skip_not_applicable
    from harness.profile import DEFAULT_PROFILE

    skip_not_applicable(items, config.stash[CONFIG_KEY].worker_profile or DEFAULT_PROFILE)


def _preflight(config: pytest.Config, cfg: Config) -> None:
    """Setup mistakes every test would repeat stop pytest here, with one message."""
    from harness import preflight
    from harness.errors import JobchaosError

    try:
        created = preflight.check(cfg)
    except JobchaosError as exc:
        raise pytest.UsageError(str(exc)) from None
    if created and not hasattr(config, "workerinput"):
        config.stash[CREATED_ARTIFACTS_KEY] = cfg.artifacts_dir


def pytest_unconfigure(config: pytest.Config) -> None:
    """An artifacts directory the preflight check created and nothing used is removed again."""
    created = config.stash.get(CREATED_ARTIFACTS_KEY, None)
    if created is not None:
        with contextlib.suppress(OSError):
            created.rmdir()  # only when empty


def _raise_on_sigterm() -> None:
    """SIGTERM ends pytest like Ctrl-C does, so fixtures tear down and servers stop."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        def interrupt(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        with contextlib.suppress(ValueError):  # not in the main thread
            signal.signal(signal.SIGTERM, interrupt)


def worker_id(config: pytest.Config) -> str:
    """``gw0``... under pytest-xdist, ``main`` otherwise."""
    return str(getattr(config, "workerinput", {}).get("workerid", "main"))


@pytest.fixture(scope="session")
def jobchaos_config(pytestconfig: pytest.Config) -> Config:
    """The harness settings, resolved once (command line, env, ini, default)."""
    return pytestconfig.stash[CONFIG_KEY]


@pytest.fixture(scope="session")
def jobchaos_stack(pytestconfig: pytest.Config, jobchaos_config: Config) -> Iterator[Stack]:
    """Redis, PostgreSQL and the SMTP sink for this pytest process, stopped at the end."""
    from harness import procs
    from harness.contract import SCHEMA_SQL
    from harness.services import cgroups
    from harness.services.stack import Stack

    procs.sweep_orphans()
    cgroups.sweep_stale()
    wid = worker_id(pytestconfig)
    try:
        stack = Stack(jobchaos_config, jobchaos_config.artifacts_dir / wid / "stack", name=wid)
        stack.start(schema_sql=SCHEMA_SQL)  # a JobchaosError is reported as its message alone
    except Exception as exc:
        pytestconfig.stash[STACK_FAILED_KEY] = exc  # every later test would fail the same way
        raise
    pytestconfig.stash[STACK_KEY] = stack
    pytestconfig.stash[WROTE_ARTIFACTS_KEY] = True
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def jobchaos_stack_factory(
    jobchaos_config: Config, jobchaos_artifacts: Path
) -> Iterator[Callable[..., Stack]]:
    """Start extra stacks this test owns (stopped when it ends): ``factory(name="b")``."""
    from harness.contract import SCHEMA_SQL
    from harness.services.stack import Stack

    started: list[Stack] = []

    def factory(name: str = "extra", **overrides: Any) -> Stack:
        import dataclasses

        cfg = dataclasses.replace(jobchaos_config, **overrides) if overrides else jobchaos_config
        stack = Stack(cfg, jobchaos_artifacts / f"stack-{name}", name=f"{name}{len(started)}")
        stack.start(schema_sql=SCHEMA_SQL)
        started.append(stack)
        return stack

    try:
        yield factory
    finally:
        for stack in reversed(started):
            stack.stop()


@pytest.fixture
def jobchaos_artifacts(request: pytest.FixtureRequest, jobchaos_config: Config) -> Path:
    """A directory for this test's logs, history and report."""
    from harness.run.builder import safe_name

    path = (jobchaos_config.artifacts_dir / worker_id(request.config)
            / safe_name(request.node.nodeid))
    path.mkdir(parents=True, exist_ok=True)
    request.config.stash[WROTE_ARTIFACTS_KEY] = True
    return path


@pytest.fixture
def jobchaos_namespace(request: pytest.FixtureRequest) -> Iterator[str]:
    """A key/queue prefix unique to this test (isolation on a shared, external Redis).

    On an external Redis every key under it is deleted when the test ends (embedded Redis
    gives each test a flushed logical database of its own instead)."""
    namespace = f"jc:{worker_id(request.config)}:{os.getpid()}:{next(_namespace_counter)}"
    yield namespace
    stack = request.config.stash.get(STACK_KEY, None)
    if stack is not None:
        stack.clear_namespace(namespace)


_namespace_counter = itertools.count(1)


@pytest.fixture
def redis_url(jobchaos_stack: Stack) -> str:
    """A Redis URL for this test: its own flushed logical database on the embedded server."""
    return jobchaos_stack.fresh_redis_url()


@pytest.fixture
def database_url(jobchaos_stack: Stack) -> Iterator[str]:
    """A PostgreSQL database of this test's own, cloned from the template; dropped after."""
    name, url = jobchaos_stack.fresh_database()
    try:
        yield url
    finally:
        with contextlib.suppress(Exception):
            jobchaos_stack.drop_database(name)


@pytest.fixture
def chaos_connections(
    jobchaos_stack: Stack, redis_url: str, database_url: str, jobchaos_namespace: str
) -> Connections:
    """Direct (unproxied) connections for a worker under test, on this test's fresh state."""
    from harness.contract import Connections

    return Connections(redis_url=redis_url, database_url=database_url,
                       smtp_host=jobchaos_stack.smtp.host, smtp_port=jobchaos_stack.smtp.port,
                       queue=f"{jobchaos_namespace}:queue")


@pytest.fixture
def smtp_sink(jobchaos_stack: Stack) -> SinkView:
    """The embedded SMTP sink, showing this test's messages."""
    from harness.services.stack import SinkView

    try:
        return SinkView(jobchaos_stack)
    except RuntimeError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def jobchaos_seed(jobchaos_config: Config) -> int:
    """The seed of this session's scenario RNGs (--jobchaos-seed, else a fresh one)."""
    import secrets

    return jobchaos_config.seed if jobchaos_config.seed is not None else secrets.randbelow(2**31)


@pytest.fixture(scope="session")
def jobchaos_worker_profile(jobchaos_config: Config) -> WorkerProfile:
    """What the worker under test declares (--jobchaos-worker-profile; default: every
    feature, no fixed policy value)."""
    from harness.profile import DEFAULT_PROFILE

    return jobchaos_config.worker_profile or DEFAULT_PROFILE


@pytest.fixture(scope="session")
def jobchaos_profile(jobchaos_config: Config) -> Profile:
    """The scenario profile (``pr`` or ``nightly``) chosen by --jobchaos-profile."""
    from harness.run import PROFILES

    return PROFILES[jobchaos_config.profile]


@pytest.fixture
def jobchaos_runs(
    request: pytest.FixtureRequest,
    jobchaos_config: Config,
    jobchaos_seed: int,
    jobchaos_stack: Stack,
    jobchaos_artifacts: Path,
    jobchaos_namespace: str,
) -> RunBuilder:
    """The builder of this test's scenario runs (used by ``chaos`` and ``chaos_factory``)."""
    from harness.run.builder import RunBuilder
    from harness.run.world import WorkerSpec
    from harness.services.stack import SinkView

    try:
        SinkView(jobchaos_stack)
    except RuntimeError as exc:
        pytest.skip(str(exc))
    builder = RunBuilder(
        test=request.node.nodeid, stack=jobchaos_stack,
        links=request.getfixturevalue("jobchaos_fault_links"),
        worker_links=request.getfixturevalue("jobchaos_worker_links"), namespace=jobchaos_namespace,
        artifacts=jobchaos_artifacts, worker=WorkerSpec.from_config(jobchaos_config), seed=jobchaos_seed,
        replay=request.config.stash.get(REPLAY_KEY, None),
        reproduce=jobchaos_config.replay_options(jobchaos_seed), shrink=jobchaos_config.shrink,
        own_redis=_own_redis(request))
    request.node.stash[BUILDER_KEY] = builder
    return builder


def _own_redis(request: pytest.FixtureRequest) -> Persistence | None:
    """The persistence of the test's own Redis server (``jobchaos_redis`` marker), if any."""
    from harness.run.dedicated import MARKER
    from harness.services.redis import PERSISTENCE

    marker = request.node.get_closest_marker(MARKER)
    if marker is None:
        return None
    persistence = marker.kwargs.get("persistence", marker.args[0] if marker.args else "none")
    if persistence not in PERSISTENCE:
        raise pytest.UsageError(f"@pytest.mark.{MARKER}(persistence={persistence!r}) on "
                                f"{request.node.nodeid}: persistence must be one of "
                                f"{', '.join(map(repr, PERSISTENCE))}")
    return persistence  # type: ignore[no-any-return]


@pytest.fixture
def chaos(request: pytest.FixtureRequest, jobchaos_runs: RunBuilder) -> Iterator[ChaosRun]:
    """A scenario run: ``chaos.check(plan)`` runs a plan and fails the test unless the verdict
    is valid. A run that did something and never reached a verdict fails at teardown."""
    with jobchaos_runs.run(require_verdict=False) as run:
        yield run
        if run.touched and run.judgement is None and not request.node.stash.get(
                CALL_FAILED_KEY, False):
            pytest.fail(f"{request.node.nodeid} started workers or dispatched jobs and ended "
                        "without a verdict: end the scenario with chaos.check(plan) (or "
                        "chaos.play(plan) / chaos.finish() when it judges the verdict itself)",
                        pytrace=False)


@pytest.fixture
def chaos_factory(
    jobchaos_runs: RunBuilder,
) -> Callable[[str], contextlib.AbstractContextManager[ChaosRun]]:
    """Fresh scenario runs inside one test (each with its own databases, queue and history),
    for property-based tests where every generated example needs a clean world."""
    return jobchaos_runs.run


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failure in a test that used the stack, attach the tail of each server's log."""
    report = yield
    from harness.errors import JobchaosError

    if call.excinfo is not None and call.excinfo.errisinstance(JobchaosError):
        # A harness error explains itself: show its message, not a traceback wall.
        report.longrepr = f"{call.excinfo.typename}: {call.excinfo.value}"
    if report.when == "call":
        item.stash[CALL_FAILED_KEY] = report.failed
    if call.excinfo is not None and report.failed:
        _stop_on_session_mistake(item, call.excinfo, report)
    stack = item.config.stash.get(STACK_KEY, None)
    used_stack = "jobchaos_stack" in getattr(item, "fixturenames", ())
    builder = item.stash.get(BUILDER_KEY, None)
    run = builder.reported if builder is not None else None
    if report.failed and run is not None and report.when == "call":
        report.sections.append(("jobchaos run", f"seed {run.seed}; artifacts {run.artifacts}"
                                + (f"\nreplay: {run.replay_command()}" if run.plan else "")))
    # A verdict explains itself, and so does a harness error (it names what failed and
    # carries the log that matters); server logs would only bury it.
    explained = (run is not None and run.judgement is not None) or (
        call.excinfo is not None and call.excinfo.errisinstance(JobchaosError))
    if report.failed and stack is not None and used_stack and not explained:
        from harness.services.base import log_tail

        for service in stack.services:
            log_path = getattr(service, "log_path", None)
            if log_path is not None:
                report.sections.append((f"jobchaos {service.name} log (tail)",
                                        log_tail(log_path)))
    return report


def _stop_on_session_mistake(item: pytest.Item, excinfo: pytest.ExceptionInfo[BaseException],
                             report: pytest.TestReport) -> None:
    """A mistake every later test would repeat is reported once, on this test, and stops the
    session (``harness.preflight.session_mistake`` says which errors are)."""
    from harness.preflight import session_mistake

    stop = session_mistake(excinfo.value, item.config.stash[CONFIG_KEY],
                           item.config.stash.get(STACK_FAILED_KEY, None))
    if stop is not None:
        message, item.session.shouldstop = stop
        if message is not None:
            report.longrepr = message


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    cfg = config.stash.get(CONFIG_KEY, None)
    if cfg is not None and config.stash.get(WROTE_ARTIFACTS_KEY, False):
        terminalreporter.write_line(f"jobchaos artifacts: {cfg.artifacts_dir}")
