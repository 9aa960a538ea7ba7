"""The recorder hook the faults API hands every inject and heal to."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Protocol, runtime_checkable

Phase = Literal["inject", "heal"]


@runtime_checkable
class FaultRecorder(Protocol):
    """Anything with this method (the history's recorder); it takes its own timestamps.
    ``target`` is what the fault strikes: a link name (``redis``), a worker id, a job id or
    a server name."""

    def record_fault(
        self,
        phase: Phase,
        fault_id: str,
        target: str,
        kind: str,
        params: Mapping[str, object],
    ) -> None: ...


class ListRecorder:
    """Keeps every call in memory (for tests and for scenarios without a history)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Phase, str, str, str, dict[str, object]]] = []

    def record_fault(
        self,
        phase: Phase,
        fault_id: str,
        target: str,
        kind: str,
        params: Mapping[str, object],
    ) -> None:
        self.calls.append((phase, fault_id, target, kind, dict(params)))
