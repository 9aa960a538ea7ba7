"""The history: one append-only record of everything a scenario did and saw.

A versioned file format (docs/history-and-checkers.md; schema in ``harness/schemas/``): a
header line, then one Jepsen-shaped op per line. This package is its public API; import from
here (``from harness.history import Recorder, load``). Its modules, each one job, in the
order they build on each other:

- ``ops``: the op model and its names (types, processes, functions, the format's version);
- ``values``: typed constructors of op values (statuses and reasons from ``harness.contract``);
- ``encoding``: the header line and JSONL lines;
- ``model``: :class:`History`, columnar and queried by the checkers;
- ``recorder``: :class:`Recorder`, writing a history as it happens;
- ``loading``: :func:`load`, :func:`loads` (the fast block parser is ``_loader``);
- ``schema``: :func:`validate_file` against the JSON Schema.
"""

from harness.history._loader import MISSING, HistoryError
from harness.history.encoding import header, header_line, parse_header
from harness.history.loading import load, loads
from harness.history.model import FaultSpan, History
from harness.history.ops import (
    ATTEMPT,
    DISPATCH,
    DISPATCHER,
    DRAIN,
    EFFECT,
    FIELDS,
    FUNCTIONS,
    HEAL,
    HISTORY_FORMAT,
    HISTORY_VERSION,
    INJECT,
    JSON,
    LIFE,
    LOCK,
    NAMED_FIELDS,
    NEMESIS,
    OBSERVER,
    OP_TYPES,
    OUTCOME,
    PROBE,
    STATE,
    FaultPhase,
    JobId,
    Op,
    OpType,
    describe_value,
    worker,
)
from harness.history.recorder import Recorder
from harness.history.schema import SCHEMA_FILE, schema, validate_file, validate_text
from harness.history.values import (
    AttemptId,
    EffectKind,
    FailureReason,
    JobState,
    Observation,
    OutcomeStatus,
    TerminalStatus,
    attempt_record,
    dispatch_value,
    effect,
    effect_row,
    job_state,
    lock_held,
    probe_status,
    reported_outcome,
    sink_message,
    worker_life,
)

__all__ = [
    "ATTEMPT",
    "DISPATCH",
    "DISPATCHER",
    "DRAIN",
    "EFFECT",
    "FIELDS",
    "FUNCTIONS",
    "HEAL",
    "HISTORY_FORMAT",
    "HISTORY_VERSION",
    "INJECT",
    "JSON",
    "LIFE",
    "LOCK",
    "MISSING",
    "NAMED_FIELDS",
    "NEMESIS",
    "OBSERVER",
    "OP_TYPES",
    "OUTCOME",
    "PROBE",
    "SCHEMA_FILE",
    "STATE",
    "AttemptId",
    "EffectKind",
    "FailureReason",
    "FaultPhase",
    "FaultSpan",
    "History",
    "HistoryError",
    "JobId",
    "JobState",
    "Observation",
    "Op",
    "OpType",
    "OutcomeStatus",
    "Recorder",
    "TerminalStatus",
    "attempt_record",
    "describe_value",
    "dispatch_value",
    "effect",
    "effect_row",
    "header",
    "header_line",
    "job_state",
    "load",
    "loads",
    "lock_held",
    "parse_header",
    "probe_status",
    "reported_outcome",
    "schema",
    "sink_message",
    "validate_file",
    "validate_text",
    "worker",
    "worker_life",
]
