"""The op model: what one line of a history is, and the names in it.

An op is Jepsen-shaped: a process *invokes* an operation ``f`` and later completes it with
``ok``, ``fail`` or ``info`` (outcome unknown). Faults write ``info`` ops from the ``nemesis``
process; after the drain the ``observer`` appends one ``ok`` op per observed fact.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, Final, Literal, TypeAlias

# The format (docs/history-and-checkers.md): the first line of every history file names it.
HISTORY_FORMAT: Final = "jobchaos-history"
HISTORY_VERSION: Final = 2

JSON: TypeAlias = bool | int | float | str | list["JSON"] | dict[str, "JSON"] | None
JobId: TypeAlias = str | int
OpType: TypeAlias = Literal["invoke", "ok", "fail", "info"]
OP_TYPES: Final = frozenset({"invoke", "ok", "fail", "info"})

# Processes.
DISPATCHER: Final = "dispatcher"
NEMESIS: Final = "nemesis"
OBSERVER: Final = "observer"

# Functions (the ``f`` of an op).
DISPATCH: Final = "dispatch"  # dispatcher: invoke {job, steps, unique?} -> ok/fail/info {job}
INJECT: Final = "inject"  # nemesis, info: {fault, target, kind, params}
HEAL: Final = "heal"  # nemesis, info: {fault, target, kind, params}
DRAIN: Final = "drain"  # observer: invoke {deadline} -> ok {pending: 0} / info {pending: n}
EFFECT: Final = "effect"  # observer, ok: {job, step, kind, ref?, at?, attempt?, attempt_id?}
OUTCOME: Final = "outcome"  # observer, ok: {job, status, reason?, attempt?, attempt_id?, worker?,
#                                             at?}, one per row
ATTEMPT: Final = "attempt"  # observer, ok: {job, attempt?, attempt_id?, worker?, at, ended?,
#                                             status?, reason?, stopped?}
PROBE: Final = "probe"  # observer, ok: {available, reason?}
STATE: Final = "state"  # observer, ok: {job, state, worker?, reason?, detail?, at?}
LOCK: Final = "lock"  # observer, ok: {key, job?, holder?, ttl, age?}
LIFE: Final = "life"  # observer, ok: {worker, pid?, at, ended?, code?}: one worker process
FUNCTIONS: Final = (DISPATCH, INJECT, HEAL, DRAIN, EFFECT, OUTCOME, ATTEMPT, PROBE, STATE, LOCK,
                    LIFE)

# The fields of values the checkers read, gathered by the loader (``History.field``).
FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    DISPATCH: ("steps",),
    EFFECT: ("step", "kind"),
    OUTCOME: ("status", "at"),
    ATTEMPT: ("at", "ended", "status"),
    STATE: ("state",),
}
NAMED_FIELDS: Final = frozenset({"kind", "status", "state"})  # fields holding names

FaultPhase: TypeAlias = Literal["inject", "heal"]


def worker(n: int) -> str:
    """The process name of worker ``n``: ``worker-2``."""
    return f"worker-{n}"


@dataclasses.dataclass(frozen=True, slots=True)
class Op:
    """One line of the history."""

    index: int
    type: OpType
    process: str
    f: str
    value: Any
    time: int  # monotonic nanoseconds since the recorder started
    wall: float  # Unix seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "type": self.type,
            "process": self.process,
            "f": self.f,
            "value": self.value,
            "time": self.time,
            "wall": self.wall,
        }

    def describe(self) -> str:
        """One line a person can read: ``#12 observer ok effect job=j-1 step=0 kind=db_write``."""
        return f"#{self.index} {self.process} {self.type} {self.f} {describe_value(self.value)}"


_SHOWN_KEYS: Final = (
    "job", "step", "kind", "status", "reason", "state", "attempt", "attempt_id", "at", "ended",
    "worker", "key", "holder", "ttl", "age", "fault", "target", "available", "pending",
    "deadline", "error", "stopped", "ready", "signalled", "code",
)
_TIME_KEYS: Final = frozenset({"at", "ended", "stopped", "ready", "signalled"})


def describe_value(value: Any, width: int = 120, origin: float | None = None) -> str:
    """The fields of an op's value that matter to a reader, ``key=value`` separated by
    spaces. Times (``at``, ``ended``) are shown relative to ``origin`` when given."""
    if isinstance(value, dict):
        parts = []
        for k in _SHOWN_KEYS:
            if k in value:
                v = value[k]
                if k in _TIME_KEYS and origin is not None and isinstance(v, int | float):
                    parts.append(f"{k}=+{v - origin:.3f}s")
                else:
                    parts.append(f"{k}={_short(v)}")
        if "steps" in value:
            parts.append(f"steps={_steps_text(value['steps'])}")
        text = " ".join(parts) if parts else json.dumps(value, default=str)
    else:
        text = json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 3] + "..."


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".") if v == v else "nan"
    return v if isinstance(v, str) else json.dumps(v, default=str)


def _steps_text(steps: Any) -> str:
    if not isinstance(steps, list):
        return _short(steps)
    return ",".join(str(s.get("op", s.get("kind", "?"))) if isinstance(s, dict) else str(s)
                    for s in steps)
