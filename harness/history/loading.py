"""Loading a JSONL history file: its header is checked first, then the ops are parsed a
block at a time into a columnar :class:`History`."""

from __future__ import annotations

import os

import harness.history._loader as _loader
from harness.history._loader import Columns, read_columns
from harness.history.encoding import parse_header
from harness.history.model import History
from harness.history.ops import DISPATCH, FIELDS, NAMED_FIELDS, OP_TYPES


def load(path: str | os.PathLike[str]) -> History:
    """Load a JSONL history. The header must name this format and a version this code reads;
    a cut-off last line (a crashed run) is dropped and the history marked ``truncated``; any
    other bad line is a :class:`HistoryError` naming the file and line."""
    with open(path, "rb") as fh:
        return _from_columns(read_columns(iter(lambda: fh.read(_loader.BLOCK), b""), str(path),
                                          OP_TYPES, DISPATCH, FIELDS, NAMED_FIELDS,
                                          parse_header))


def loads(data: bytes | str, *, source: str = "<history>") -> History:
    """Parse JSONL history text, header first (see :func:`load`)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return _from_columns(read_columns(iter([raw]), source, OP_TYPES, DISPATCH, FIELDS,
                                      NAMED_FIELDS, parse_header))


def _from_columns(cols: Columns) -> History:
    created = cols.header.get("created") if cols.header else None
    return History(cols.types, cols.processes, cols.fs, cols.values, cols.times, cols.walls,
                   cols.jobs, cols.codes, cols.job_ids, truncated=cols.truncated,
                   fields=cols.fields, runs=cols.runs, created=created)
