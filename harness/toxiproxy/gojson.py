"""Decode request bodies the way Go's encoding/json does for Toxiproxy's structs.

Keys match case-insensitively (last one wins), unknown keys are ignored, `null` leaves a
field unchanged, and type mismatches give Go-like messages. Only the first JSON value of
the body is read, as `json.NewDecoder(body).Decode` does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Literal

from .errors import BAD_REQUEST_BODY, ApiError

Kind = Literal["string", "bool", "int", "float"]
_GO_TYPES: dict[Kind, str] = {"string": "string", "bool": "bool", "int": "int64", "float": "float32"}
_WS = " \t\r\n"


def decode_body(body: bytes) -> object:
    """Parse the first JSON value; errors are 400 `bad request body: ...`."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise BAD_REQUEST_BODY.wrap("invalid character looking for beginning of value") from None
    start = len(text) - len(text.lstrip(_WS))
    if start == len(text):
        raise BAD_REQUEST_BODY.wrap("EOF")
    try:
        value, _ = json.JSONDecoder().raw_decode(text, start)
    except json.JSONDecodeError as exc:
        raise BAD_REQUEST_BODY.wrap(_go_syntax_message(text, exc)) from None
    return value


def _go_syntax_message(text: str, exc: json.JSONDecodeError) -> str:
    if exc.pos >= len(text.rstrip(_WS)):
        return "unexpected EOF"
    char = text[exc.pos]
    where = "looking for beginning of value" if exc.pos == 0 else "after object key"
    if "delimiter" in exc.msg:
        where = "after object key:value pair"
    return f"invalid character {char!r} {where}"


def json_type(value: object) -> str:
    """The JSON type name Go uses in unmarshal errors."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def type_error(value: object, where: str, go_type: str) -> ApiError:
    """`bad request body: json: cannot unmarshal X into Go struct field W of type T`."""
    kind = json_type(value)
    if kind == "number" and go_type.startswith("int"):
        kind = f"number {value}"
    return BAD_REQUEST_BODY.wrap(f"json: cannot unmarshal {kind} into Go {where} of type {go_type}")


def fold_keys(obj: Mapping[str, object], names: tuple[str, ...]) -> dict[str, object]:
    """Map known field names to values, matching keys case-insensitively; nulls dropped."""
    wanted = {name.lower(): name for name in names}
    found: dict[str, object] = {}
    for key, value in obj.items():
        name = wanted.get(key.lower())
        if name is not None and value is not None:
            found[name] = value
    return found


def expect_object(value: object, go_type: str) -> Mapping[str, object]:
    """The body must be a JSON object (Go: cannot unmarshal array into Go value of type T)."""
    if not isinstance(value, dict):
        kind = json_type(value)
        raise BAD_REQUEST_BODY.wrap(f"json: cannot unmarshal {kind} into Go value of type {go_type}")
    return value


def typed_fields(
    obj: Mapping[str, object], schema: Mapping[str, Kind], struct: str
) -> dict[str, object]:
    """Pick the schema's fields out of obj, checking each value's JSON type like Go."""
    found = fold_keys(obj, tuple(schema))
    for name, value in found.items():
        kind = schema[name]
        ok = {
            "string": isinstance(value, str),
            "bool": isinstance(value, bool),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, int | float) and not isinstance(value, bool),
        }[kind]
        if kind == "int" and ok and not -(2**63) <= int(value) < 2**63:  # type: ignore[call-overload]
            ok = False
        if not ok:
            raise type_error(value, f"struct field {struct}.{name}", _GO_TYPES[kind])
    return found
