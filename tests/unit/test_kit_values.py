"""The worker kit's pure parts: env parsing and its errors, envelopes, probe answers."""

from __future__ import annotations

import io
import json
import math

import pytest

from harness.contract import Connections, Dead, Lease, Policy, ProbeState, job, sleep, worker_env
from harness.kit import NO_EXPIRY, Kit, KitError, as_job, print_probe, probe_main, probe_state

CONN = Connections(redis_url="redis://127.0.0.1:1/0", database_url="postgresql://own/db",
                   smtp_host="127.0.0.1", smtp_port=2525, queue="q")


def test_from_env_reads_the_contract_and_the_report_link():
    env = worker_env(CONN, Policy(max_tries=1, job_timeout=4.0), "worker-3",
                     report_database_url="postgresql://direct/db")
    kit = Kit.from_env(env)
    assert (kit.worker, kit.connections, kit.report_url) == ("worker-3", CONN,
                                                             "postgresql://direct/db")
    assert (kit.policy.max_tries, kit.policy.job_timeout, kit.effects) == (1, 4.0, "plain")
    # Without CHAOS_REPORT_DATABASE_URL, reports go over the worker's own database link.
    env.pop("CHAOS_REPORT_DATABASE_URL")
    assert Kit.from_env(env).report_url == "postgresql://own/db"


def test_from_env_says_which_variable_is_missing_or_malformed():
    env = worker_env(CONN, Policy(), "worker-1")
    with pytest.raises(KitError, match=r"CHAOS_REDIS_URL is not set.*docs/contract\.md"):
        Kit.from_env({k: v for k, v in env.items() if k != "CHAOS_REDIS_URL"})
    with pytest.raises(KitError, match=r"malformed.*docs/contract\.md"):
        Kit.from_env({**env, "CHAOS_SMTP_PORT": "twenty-five"})
    with pytest.raises(KitError, match="effects must be one of"):
        Kit.from_env(env, effects="twice")  # type: ignore[arg-type]


def test_as_job_takes_every_form_of_an_envelope():
    j = job("a", sleep(0.1))
    assert as_job(j) is j
    assert as_job(j.to_json()) == j == as_job({"id": "a", "steps": [{"op": "sleep",
                                                                     "seconds": 0.1}]})
    with pytest.raises(ValueError, match="JSON object"):
        as_job("[1, 2]")


def test_probe_state_builds_the_answer_from_plain_values():
    state = probe_state(queued=iter(["j1", "j2"]), leased=[("j3", "worker-1"),
                                                           Lease("j4", "worker-2", 1.5)],
                        dead={"j5": "exception"})
    assert state == ProbeState(queued=("j1", "j2"),
                               leased=(Lease("j3", "worker-1", NO_EXPIRY),
                                       Lease("j4", "worker-2", 1.5)),
                               dead=(Dead("j5", "exception"),))
    out = io.StringIO()
    print_probe(state, out)
    assert ProbeState.from_json(out.getvalue()) == state
    assert math.isinf(json.loads(out.getvalue())["leased"][0]["expires_in"])


def test_probe_main_prints_the_answer_or_one_line_saying_what_failed(capsys):
    env = worker_env(CONN, Policy(), "probe")
    assert probe_main(lambda kit: probe_state(queued=[kit.connections.queue]), env) == 0
    assert ProbeState.from_json(capsys.readouterr().out) == ProbeState(queued=("q",))

    def broken(kit: Kit) -> ProbeState:
        raise ConnectionError("Redis is away")

    assert probe_main(broken, env) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.strip() == (
        "probe: reading the worker's structures failed: ConnectionError: Redis is away")
    assert probe_main(broken, {}) == 2
    assert "CHAOS_REDIS_URL is not set" in capsys.readouterr().err
