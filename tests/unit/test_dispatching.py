"""Dispatchers: how each dispatch ends in the history (returned: ok; NotEnqueued: fail;
anything else: info), the default Redis list against a refused and a silent port, and
``load`` naming what it tried when a ``module:callable`` cannot be used."""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import history as h
from harness.contract import Connections, Job, db_write, job
from harness.dispatching import DispatchContext, NotEnqueued, load, redis_list
from harness.errors import DispatcherError
from harness.run.policy import SCENARIO_POLICY
from harness.run.workload import Workload
from harness.services.base import free_port


def _conns(redis_url: str = "redis://127.0.0.1:1/0", queue: str = "q") -> Connections:
    return Connections(redis_url=redis_url, database_url="postgresql://x/db",
                       smtp_host="127.0.0.1", smtp_port=25, queue=queue)


def _ended(recorder: h.Recorder) -> dict[str, tuple[str, str | None]]:
    return {op.value["job"]: (op.type, op.value.get("error"))
            for op in recorder.history().ops(h.DISPATCH) if op.type != "invoke"}


def test_the_history_records_ok_fail_or_info_from_what_the_dispatcher_did():
    seen: list[DispatchContext] = []

    def plugin(j: Job, ctx: DispatchContext) -> None:
        seen.append(ctx)
        if j.id == "refused":
            raise NotEnqueued("refused at connect")
        if j.id == "cut":
            raise ConnectionResetError("reset after sending")

    direct, proxied = _conns("redis://direct:1/0"), _conns("redis://proxied:2/0")
    workload = Workload(h.Recorder(), direct, proxied, lambda: SCENARIO_POLICY, plugin)
    workload.dispatch(job("fine", db_write()), job("refused", db_write()))
    workload.dispatch(job("cut", db_write()), through_proxy=True, timeout=2.0)
    assert _ended(workload.recorder) == {
        "fine": ("ok", None), "refused": ("fail", "refused at connect"),
        "cut": ("info", "ConnectionResetError: reset after sending")}
    assert set(workload.dispatched) == {"fine", "refused", "cut"}
    assert workload.errors == ["refused at connect", "ConnectionResetError: reset after sending"]
    assert [(c.direct, c.proxied, c.timeout) for c in seen] == [
        (direct, proxied, 5.0), (direct, proxied, 5.0), (proxied, proxied, 2.0)]
    assert {c.queue for c in seen} == {"q"} and all(c.policy is SCENARIO_POLICY for c in seen)


def test_the_default_dispatcher_refused_is_not_enqueued():
    ctx = DispatchContext(SCENARIO_POLICY, _conns(f"redis://127.0.0.1:{free_port()}/0"),
                          _conns(), "q", timeout=2.0)
    with pytest.raises(NotEnqueued, match="Connection refused"):
        redis_list(job("a", db_write()), ctx)


@contextlib.contextmanager
def _silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


def test_the_default_dispatcher_unanswered_is_unknown():
    with _silent_port() as port:
        workload = Workload(h.Recorder(), _conns(f"redis://127.0.0.1:{port}/0"), _conns(),
                            lambda: SCENARIO_POLICY)
        workload.dispatch(job("a", db_write()), timeout=0.3)
    [(kind, error)] = _ended(workload.recorder).values()
    assert kind == "info" and error is not None and "Timeout" in error, error


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "good_dispatch.py").write_text(
        "class Holder:\n    @staticmethod\n    def enqueue(job, ctx):\n        pass\n"
        "NOT_CALLABLE = 3\n")
    (tmp_path / "needs_missing.py").write_text("import a_library_not_installed\n")
    (tmp_path / "raises_on_import.py").write_text("x = 1\nraise RuntimeError('no config')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("good_dispatch", "needs_missing", "raises_on_import"):
        sys.modules.pop(name, None)


def test_load_finds_a_nested_callable(modules: Path):
    import good_dispatch

    assert load("good_dispatch:Holder.enqueue") is good_dispatch.Holder.enqueue


@pytest.mark.parametrize(("spec", "expected"), [
    ("good_dispatch", "expected module:callable, e.g. myapp.chaos_dispatch:enqueue"),
    ("good_dispatch:", "expected module:callable"),
    ("no_such.module:f", "no module named 'no_such' on the import path ({tmp}, "),
    ("good_dispatch:Holder.nope", "good_dispatch.Holder has no attribute 'nope' (module "
                                  "good_dispatch: {tmp}/good_dispatch.py)"),
    ("good_dispatch:NOT_CALLABLE", "good_dispatch:NOT_CALLABLE is a int, not a callable"),
    ("needs_missing:f", "importing 'needs_missing' failed: ModuleNotFoundError: No module "
                        "named 'a_library_not_installed' at {tmp}/needs_missing.py:1"),
    ("raises_on_import:f", "importing 'raises_on_import' failed: RuntimeError: no config at "
                           "{tmp}/raises_on_import.py:2"),
])
def test_load_says_what_it_tried_and_the_fix(modules: Path, spec: str, expected: str):
    with pytest.raises(DispatcherError) as info:
        load(spec, "env JOBCHAOS_DISPATCHER")
    message = str(info.value)
    assert message.startswith(f"dispatcher: {spec!r} (from env JOBCHAOS_DISPATCHER) cannot "
                              "be used: "), message
    assert expected.format(tmp=modules) in message, message
    assert message.count("Fix:") == 1 and "--jobchaos-dispatcher / JOBCHAOS_DISPATCHER / " \
        "ini jobchaos_dispatcher" in message
