"""The JSONL form of a history: the header line that names the format and its version, and
one op per line after it."""

from __future__ import annotations

import dataclasses
import enum
import json
import time
from collections.abc import Mapping
from typing import Any, cast

from harness.history._loader import HistoryError
from harness.history.ops import HISTORY_FORMAT, HISTORY_VERSION, JSON


def header(created: float | None = None) -> dict[str, JSON]:
    """The header object: format, version, and ``created``, the Unix time at which the
    recorder started (an op's ``time`` counts nanoseconds from that instant)."""
    return {"format": HISTORY_FORMAT, "version": HISTORY_VERSION,
            "created": time.time() if created is None else created}


def header_line(created: float | None = None) -> str:
    """The first line of a history file (with its newline). Hand-written histories start
    with it too: ``header_line() + "".join(op lines)``."""
    return line(header(created))


def _jsonable(o: object) -> JSON:
    if isinstance(o, enum.Enum):
        return cast(JSON, o.value)
    if isinstance(o, set | frozenset):
        return sorted((cast(JSON, x) for x in o), key=str)
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return cast(JSON, dataclasses.asdict(o))
    if isinstance(o, bytes):
        return o.decode("utf-8", "replace")
    return str(o)


def line(obj: Mapping[str, Any]) -> str:
    """One JSONL line: compact JSON (tuples as lists, sets sorted, other objects as text)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=_jsonable) + "\n"


def as_loaded(value: Any) -> Any:
    """``value`` as a loader would read it back from its line."""
    return json.loads(json.dumps(value, ensure_ascii=False, default=_jsonable))


_FIX = (f"a history's first line is its header, e.g. "
        f'{{"format":"{HISTORY_FORMAT}","version":{HISTORY_VERSION},"created":1763935012.25}}')


def parse_header(text: bytes, where: str) -> dict[str, Any]:
    """Read and check a header line: the format must be ours and the version one this
    code reads. ``where`` (``file:line``) starts every error message."""
    if not text.strip():
        raise HistoryError(f"{where}: empty: no history header ({_FIX})")
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise HistoryError(f"{where}: no history header, the first line is not JSON ({e}); "
                           f"{_FIX}") from None
    if not isinstance(obj, dict) or "format" not in obj:
        old = isinstance(obj, dict) and "index" in obj and "f" in obj
        raise HistoryError(
            f"{where}: no history header" + (
                ": the first line is an op, as in histories written before format version "
                f"{HISTORY_VERSION}. Record it again with this jobchaos, or (hand-written) "
                "start it with harness.history.header_line()" if old else f"; {_FIX}"))
    if obj["format"] != HISTORY_FORMAT:
        raise HistoryError(f"{where}: format {obj['format']!r} is not {HISTORY_FORMAT!r}")
    version = obj.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise HistoryError(f"{where}: the header's version {version!r} is not an integer")
    if version > HISTORY_VERSION:
        raise HistoryError(f"{where}: history format version {version} is newer than this "
                           f"jobchaos reads (version {HISTORY_VERSION}): upgrade jobchaos")
    if version < HISTORY_VERSION:
        raise HistoryError(f"{where}: history format version {version} is no longer read "
                           f"(this jobchaos reads version {HISTORY_VERSION}): record it again")
    created = obj.get("created")
    if not isinstance(created, int | float) or isinstance(created, bool):
        raise HistoryError(f"{where}: the header has no 'created' time (Unix seconds)")
    return obj
