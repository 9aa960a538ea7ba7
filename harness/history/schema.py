"""Validating history files against the JSON Schema shipped in the package
(``harness/schemas/history-v2.schema.json``). Needs ``jsonschema`` (a dev extra), imported
only when a file is validated."""

from __future__ import annotations

import functools
import json
import os
from importlib import resources
from typing import Any, Final

from harness.history._loader import HistoryError
from harness.history.ops import HISTORY_VERSION

SCHEMA_FILE: Final = f"history-v{HISTORY_VERSION}.schema.json"


def schema_text() -> str:
    """The schema of this format version, as shipped (``harness/schemas/``)."""
    return resources.files("harness").joinpath("schemas", SCHEMA_FILE).read_text("utf-8")


@functools.cache
def schema() -> dict[str, Any]:
    """The schema of this format version, parsed."""
    loaded: dict[str, Any] = json.loads(schema_text())
    return loaded


@functools.cache
def _validator() -> Any:
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - depends on the environment
        raise HistoryError("validating a history needs jsonschema: pip install jsonschema"
                           ) from None
    cls = jsonschema.validators.validator_for(schema())
    cls.check_schema(schema())
    return cls(schema())


def validate_file(path: str | os.PathLike[str]) -> int:
    """Validate every line of a history file; return how many ops it has. A problem is a
    :class:`HistoryError` naming the file, the line and what is wrong."""
    with open(path, "rb") as fh:
        return validate_text(fh.read(), source=str(path))


def validate_text(data: bytes | str, *, source: str = "<history>") -> int:
    """Validate JSONL history text (see :func:`validate_file`)."""
    validator = _validator()
    import jsonschema

    raw = data.encode("utf-8") if isinstance(data, str) else data
    lines = raw.split(b"\n")
    ops = 0
    seen_header = False
    for n, text in enumerate(lines, 1):
        if not text.strip():
            continue
        where = f"{source}:{n}"
        try:
            obj = json.loads(text)
        except ValueError as e:
            if n == len(lines) and seen_header:  # an unterminated last line: a crashed run
                break
            raise HistoryError(f"{where}: not JSON: {e}") from None
        is_header = isinstance(obj, dict) and "format" in obj
        if not seen_header and not is_header:
            raise HistoryError(f"{where}: the first line must be the header "
                               "(harness.history.header_line())")
        if seen_header and is_header:
            raise HistoryError(f"{where}: a second header; only the first line is one")
        error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
        if error is not None:
            raise HistoryError(f"{where}: {_describe(obj, error)}")
        if is_header:
            seen_header = True
            continue
        if obj["index"] != ops:
            raise HistoryError(f"{where}: index {obj['index']}, expected {ops}")
        ops += 1
    if not seen_header:
        raise HistoryError(f"{source}: empty: no header line")
    return ops


def _describe(obj: Any, error: Any) -> str:
    """What is wrong, and where in the line: ``attempt op: value.status: 'ok' is not one
    of ['completed', 'retrying', 'dead']``."""
    what = (f"{obj.get('f')} op" if isinstance(obj, dict) and "index" in obj else
            "header" if isinstance(obj, dict) and "format" in obj else "line")
    at = ".".join(str(p) for p in error.absolute_path)
    message = error.message
    banned = error.validator_value.get("required") if error.validator == "not" else None
    if banned and isinstance(error.instance, dict):  # e.g. a reason on a completed outcome
        status = error.instance.get("status")
        message = f"{banned[0]!r} is not allowed" + (f" with status {status!r}" if status else "")
    return f"{what}: {at + ': ' if at else ''}{message}"
