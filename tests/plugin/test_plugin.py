"""The plugin as a user meets it: options, clear errors, isolation, xdist, external mode."""

from __future__ import annotations

import time

import pytest

pytest_plugins = ["pytester"]


def test_help_lists_every_option(pytester: pytest.Pytester):
    result = pytester.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(["*jobchaos: chaos testing of job workers*",
                                 "*--jobchaos-redis-url*", "*--jobchaos-toxiproxy-url*"])


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--jobchaos-smtp=nohost"], {}, "*smtp: 'nohost' (from --jobchaos-smtp) is not valid*"),
        ([], {"JOBCHAOS_START_TIMEOUT": "0"}, "*start_timeout: '0' (from env JOBCHAOS_START_TIMEOUT)*"),
    ],
)
def test_bad_setting_is_a_usage_error(pytester: pytest.Pytester, monkeypatch, args, env, expected):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([expected])
    assert "Traceback" not in result.stderr.str()


def test_each_test_gets_fresh_isolated_state(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import psycopg, redis, pytest

        @pytest.mark.parametrize("n", range(3))
        def test_fresh(n, redis_url, database_url, jobchaos_namespace):
            r = redis.Redis.from_url(redis_url)
            assert r.dbsize() == 0
            r.set("mine", n)
            with psycopg.connect(database_url) as conn:
                assert conn.execute(
                    "SELECT count(*) FROM pg_tables WHERE tablename = 'mine'").fetchone() == (0,)
                conn.execute("CREATE TABLE mine (n int)")
            assert jobchaos_namespace.startswith("jc:main:")
        """
    )
    pytester.runpytest_subprocess("-p", "no:xdist").assert_outcomes(passed=3)


def test_xdist_two_workers_each_start_stacks_without_collisions(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import psycopg, redis, pytest

        @pytest.mark.parametrize("n", range(4))
        def test_own_stack(n, jobchaos_stack_factory, redis_url, database_url):
            stack = jobchaos_stack_factory()
            r = redis.Redis(host=stack.redis.host, port=stack.redis.port)
            assert r.ping()
            name, url = stack.fresh_database()
            with psycopg.connect(url) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
            assert stack.redis.port != redis.Redis.from_url(redis_url).connection_pool \\
                .connection_kwargs["port"]
        """
    )
    result = pytester.runpytest_subprocess("-n", "2")
    result.assert_outcomes(passed=4)


def test_external_mode_starts_nothing_and_uses_the_given_servers(
        pytester: pytest.Pytester, jobchaos_stack):
    stack = jobchaos_stack
    pytester.makepyfile(
        f"""
        import psutil, redis

        def test_external(jobchaos_stack, redis_url, database_url):
            assert jobchaos_stack.config.external == ("redis", "postgres", "smtp")
            assert all(s.server is None for s in jobchaos_stack.services)
            assert psutil.Process().children(recursive=True) == []
            assert redis.Redis.from_url(redis_url).connection_pool \\
                .connection_kwargs["port"] == {stack.redis.port}
            assert ":{stack.postgres.port}/" in database_url
            assert jobchaos_stack.smtp.port == {stack.smtp.port}

        def test_sink_messages_need_the_embedded_sink(smtp_sink):
            pass
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:xdist", "-rs",
        f"--jobchaos-redis-url={stack.redis.url(5)}",
        f"--jobchaos-database-url={stack.postgres.url('postgres')}",
        f"--jobchaos-smtp={stack.smtp.host}:{stack.smtp.port}",
    )
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*messages are recorded only by the embedded SMTP sink*"])


def test_worker_that_exits_at_once_is_one_clear_message_and_stops_the_session(
        pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import pytest
        from harness.contract import db_write, job

        @pytest.mark.parametrize("n", range(3))
        def test_scenario(chaos, n):
            chaos.start_workers(2)
            chaos.dispatch(job("j1", db_write()))
            chaos.drain()
        """
    )
    started = time.monotonic()
    result = pytester.runpytest_subprocess(
        "-p", "no:xdist", "--jobchaos-worker-cmd",
        "python -c \"import sys; print('cannot connect to the queue'); sys.exit(3)\"")
    assert time.monotonic() - started < 30
    result.assert_outcomes(failed=1)  # the other two never ran: every one would fail alike
    result.stdout.fnmatch_lines(["*WorkerStartError: worker-? exited with code 3*",
                                 "*cannot connect to the queue*",
                                 "*Interrupted: jobchaos: *WorkerStartError*"])
    assert "Traceback" not in result.stdout.str()
