"""Mistakes in the session's setup, which every test would otherwise repeat.

:func:`check` runs once when pytest configures and needs no server: an artifacts directory that
cannot be written, a worker command whose program does not exist, a dispatcher that cannot be
imported, a binary given explicitly that is not executable, a bug switch that does not exist.
The plugin turns what it raises into one usage error naming the fix, before any test runs.

:func:`session_mistake` recognises, in a failing test, an error only a server or a worker could
reveal (an unreachable server, a stack that did not start, a worker command that dies at once,
a disk that filled up); the plugin then reports it once and stops the session.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path

from harness.config import SETTINGS, Config
from harness.errors import ArtifactsDirError, JobchaosError, SessionError, WorkerCommandError

PROBE_BYTES = 64 * 1024  # enough that an almost-full filesystem is caught too
_HOW = {s.name: s.how_to_set for s in SETTINGS}


def reason(exc: OSError) -> str:
    """An OSError as a person reads it: "No space left on device", "Read-only file system"."""
    return os.strerror(exc.errno) if exc.errno else str(exc)


def writable_dir(path: Path, setting: str, cfg: Config) -> bool:
    """Create ``path`` (and parents) and write, sync and remove a probe file in it.

    Returns True when the directory did not exist before. Raises :class:`ArtifactsDirError`
    naming the setting, where its value came from, what failed and the fix.
    """
    existed = path.is_dir()
    probe = path / f".jobchaos-probe-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as fh:
            fh.write(b"\0" * PROBE_BYTES)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise ArtifactsDirError(dir_message(path, setting, cfg, exc)) from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
    return not existed


def dir_message(path: Path, setting: str, cfg: Config, exc: OSError) -> str:
    source = cfg.sources.get(setting, "default")
    what = reason(exc)
    where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free space on that filesystem, or point it at another one"
    elif exc.errno == errno.EROFS:
        fix = "point it at a directory on a writable filesystem"
    else:
        fix = "point it at a directory you can create and write"
    return (f"{setting}: cannot write to {path} (from {source}): {what}{where}. "
            f"Fix: {fix} with {_HOW[setting]}.")


def runnable(argv: tuple[str, ...], setting: str, cfg: Config) -> None:
    """The program of a command exists and is executable (as the harness will run it)."""
    program = argv[0]
    if shutil.which(program) is not None:
        return
    source = cfg.sources.get(setting, "default")
    if os.sep in program:
        path = Path(program)
        why = ("does not exist" if not path.exists() else
               "is not a file" if not path.is_file() else "is not executable")
        what = f"{program} {why}"
    else:
        what = f"{program} is not on PATH ({os.environ.get('PATH', '')})"
    raise WorkerCommandError(
        f"{setting}: {' '.join(argv)!r} (from {source}) cannot run: {what}. "
        f"Fix: set {_HOW[setting]} to a command whose program exists and is executable."
    )


def check(cfg: Config) -> bool:
    """Every check of the setup; True when the artifacts directory was created here."""
    created = writable_dir(cfg.artifacts_dir, "artifacts_dir", cfg)
    if cfg.worker_cmd is not None:
        runnable(cfg.worker_cmd, "worker_cmd", cfg)
    if cfg.probe_cmd is not None and cfg.probe_cmd != ("none",):
        runnable(cfg.probe_cmd, "probe_cmd", cfg)
    if cfg.dispatcher is not None:
        from harness import dispatching

        dispatching.load(cfg.dispatcher, cfg.sources.get("dispatcher", "default"))
    if cfg.worker_bugs and cfg.worker_cmd is None:
        from reference_worker.bugs import UnknownBugError, parse

        try:
            parse(cfg.worker_bugs)
        except UnknownBugError as exc:
            raise WorkerCommandError(
                f"worker_bugs: {exc} (from {cfg.sources.get('worker_bugs', 'default')}). "
                f"Fix: set {_HOW['worker_bugs']} to valid names, or unset it."
            ) from None
    if cfg.replay is not None:
        from harness.nemesis.replay import ReplayError, load

        try:
            load(cfg.replay)
        except ReplayError as exc:
            raise JobchaosError(str(exc)) from None
    if cfg.redis_url is None and cfg.redis_bin is not None:
        from harness.services.redis import find_redis_server

        find_redis_server(cfg.redis_bin)
    if cfg.database_url is None:
        if cfg.postgres_bin_dir is not None:
            from harness.services.postgres import find_pg_bindir

            find_pg_bindir(cfg.postgres_bin_dir)
        writable_dir(cfg.cache_dir, "cache_dir", cfg)
    return created


def session_mistake(exc: BaseException, cfg: Config,
                    stack_failure: BaseException | None) -> tuple[str | None, str] | None:
    """For an error every later test would repeat: (the message to show instead of the test's
    report, or None to keep it; the line that stops the session). None for any other error."""
    message: str | None = None
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        message = (
            f"{reason(exc)} writing {exc.filename or 'a file'}. Fix: free space on that "
            f"filesystem or make it writable; for the artifacts (now {cfg.artifacts_dir}) "
            f"{_HOW['artifacts_dir']} can point at another one.")
        first = message
    elif isinstance(exc, SessionError) or exc is stack_failure or _unproven_worker_died(exc):
        first = f"{type(exc).__name__}: {exc}".splitlines()[0]
    else:
        return None
    first = first.split(" Fix:")[0][:160]
    return message, f"jobchaos: {first} (every test would repeat this; see the error above)"


def _unproven_worker_died(exc: BaseException) -> bool:
    """A worker died before any worker of this session ran for a few seconds: its command."""
    from harness.services.workers import WorkerStartError, worker_command_proven

    return isinstance(exc, WorkerStartError) and not worker_command_proven()
