"""Decode request bodies the way Go's encoding/json does for Toxiproxy's structs.

Keys match case-insensitively (last one wins), unknown keys are ignored, `null` leaves a
field unchanged, and type mismatches give Go-like messages. Only the first JSON value of
the body is read, as `json.NewDecoder(body).Decode` does: a scanner with the states of
Go's `encoding/json` finds where that value ends, or the byte where it goes wrong, and
words the error as Go does (`invalid character 'x' after object key`, `unexpected EOF`).
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Mapping
from typing import Literal

from .errors import BAD_REQUEST_BODY, ApiError

Kind = Literal["string", "bool", "int", "float"]
_GO_TYPES: dict[Kind, str] = {"string": "string", "bool": "bool", "int": "int64", "float": "float32"}
_FLOAT32_MAX = 3.4028234663852886e38
_MAX_DEPTH = 10000  # Go's maxNestingDepth

_SPACE = re.compile(rb"[ \t\r\n]*")
_STRING_RUN = re.compile(rb'[^"\\\x00-\x1f]*')
_DIGITS = re.compile(rb"[0-9]*")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ESCAPES = frozenset(b'"\\/bfnrt')
_LITERALS = {ord("t"): b"true", ord("f"): b"false", ord("n"): b"null"}
_OBJECT_KEY, _OBJECT_VALUE, _ARRAY = 0, 1, 2
_CONTROL_NAMES = {7: "a", 8: "b", 9: "t", 10: "n", 11: "v", 12: "f", 13: "r"}


class _Syntax(Exception):
    """A Go decoder error; its text follows `bad request body: `."""


def _go_replace(exc: UnicodeError) -> tuple[str, int]:
    """Go turns each byte of invalid UTF-8 in a string into one U+FFFD."""
    assert isinstance(exc, UnicodeDecodeError)
    return "\ufffd" * (exc.end - exc.start), exc.end


codecs.register_error("gojson-replace", _go_replace)


def quote_char(c: int) -> str:
    """Go's quoteChar: how a byte is shown in `invalid character ...`."""
    if c == ord("'"):
        return "'\\''"
    if c == ord('"'):
        return "'\"'"
    if c == ord("\\"):
        return "'\\\\'"
    if c in _CONTROL_NAMES:
        return f"'\\{_CONTROL_NAMES[c]}'"
    if c < 0x20 or c == 0x7F:
        return f"'\\x{c:02x}'"
    if 0x80 <= c <= 0xA0 or c == 0xAD:  # not printable as runes U+0080..U+00A0, U+00AD
        return f"'\\u{c:04x}'"
    return f"'{chr(c)}'"


def _bad(c: int, context: str) -> _Syntax:
    return _Syntax(f"invalid character {quote_char(c)} {context}")


class _Scanner:
    """Finds the end of the first JSON value in data (Go's scanner, run on bytes)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.end = len(data)

    def space(self, i: int) -> int:
        match = _SPACE.match(self.data, i)
        assert match is not None
        return match.end()

    def at(self, i: int) -> int:
        """The byte at i; past the end the value is unfinished (Go: unexpected EOF)."""
        if i >= self.end:
            raise _Syntax("unexpected EOF")
        return self.data[i]

    def first_value(self) -> int:
        start = self.space(0)
        if start == self.end:
            raise _Syntax("EOF")
        return self.value(start)

    def value(self, i: int) -> int:
        """Scan the value starting at i (no leading space); returns the index after it."""
        stack: list[int] = []
        while True:
            c = self.at(i)
            if c == ord("{") or c == ord("["):
                stack.append(_OBJECT_KEY if c == ord("{") else _ARRAY)
                if len(stack) > _MAX_DEPTH:
                    raise _bad(c, "exceeded max depth")
                i = self.space(i + 1)
                close = ord("}") if c == ord("{") else ord("]")
                if self.at(i) == close:
                    stack.pop()
                    i += 1
                elif c == ord("{"):
                    i = self.key(i)
                else:
                    continue  # an array element begins at i
            else:
                i = self.scalar(i, c)
            # after a value: a delimiter of the enclosing container, or the end
            while stack:
                i = self.space(i)
                c = self.at(i)
                top = stack[-1]
                if top == _OBJECT_KEY:
                    if c != ord(":"):
                        raise _bad(c, "after object key")
                    stack[-1] = _OBJECT_VALUE
                    i = self.space(i + 1)
                    break
                if c == ord(","):
                    if top == _OBJECT_VALUE:
                        stack[-1] = _OBJECT_KEY
                        i = self.key(self.space(i + 1))
                        continue
                    i = self.space(i + 1)
                    break
                if c == (ord("}") if top == _OBJECT_VALUE else ord("]")):
                    stack.pop()
                    i += 1
                    continue
                raise _bad(c, "after object key:value pair" if top == _OBJECT_VALUE
                           else "after array element")
            else:
                return i

    def key(self, i: int) -> int:
        c = self.at(i)
        if c != ord('"'):
            raise _bad(c, "looking for beginning of object key string")
        return self.string(i)

    def scalar(self, i: int, c: int) -> int:
        if c == ord('"'):
            return self.string(i)
        if c == ord("-") or ord("0") <= c <= ord("9"):
            return self.number(i)
        word = _LITERALS.get(c)
        if word is None:
            raise _bad(c, "looking for beginning of value")
        for k in range(1, len(word)):
            got = self.at(i + k)
            if got != word[k]:
                expected = quote_char(word[k])
                raise _bad(got, f"in literal {word.decode()} (expecting {expected})")
        return i + len(word)

    def string(self, i: int) -> int:
        i += 1
        while True:
            match = _STRING_RUN.match(self.data, i)
            assert match is not None
            i = match.end()
            c = self.at(i)
            if c == ord('"'):
                return i + 1
            if c != ord("\\"):
                raise _bad(c, "in string literal")
            c = self.at(i + 1)
            if c in _ESCAPES:
                i += 2
            elif c == ord("u"):
                for k in range(i + 2, i + 6):
                    if self.at(k) not in _HEX:
                        raise _bad(self.data[k], "in \\u hexadecimal character escape")
                i += 6
            else:
                raise _bad(c, "in string escape code")

    def digits(self, i: int) -> int:
        match = _DIGITS.match(self.data, i)
        assert match is not None
        return match.end()

    def number(self, i: int) -> int:
        if self.data[i] == ord("-"):
            i += 1
            c = self.at(i)
            if not ord("0") <= c <= ord("9"):
                raise _bad(c, "in numeric literal")
        i = i + 1 if self.data[i] == ord("0") else self.digits(i)
        if i < self.end and self.data[i] == ord("."):
            c = self.at(i + 1)
            if not ord("0") <= c <= ord("9"):
                raise _bad(c, "after decimal point in numeric literal")
            i = self.digits(i + 1)
        if i < self.end and self.data[i] in b"eE":
            i += 1
            if self.at(i) in b"+-":
                i += 1
            c = self.at(i)
            if not ord("0") <= c <= ord("9"):
                raise _bad(c, "in exponent of numeric literal")
            i = self.digits(i)
        return i


class Number(float):
    """A JSON number with a fraction or exponent, keeping its text for Go-like messages."""

    text: str

    def __new__(cls, text: str) -> Number:
        number = super().__new__(cls, text)
        number.text = text
        return number

    def __str__(self) -> str:
        return self.text


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _no_surrogates(value: object) -> object:
    """Go replaces an unpaired \\uD800-\\uDFFF escape with U+FFFD."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_no_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_no_surrogates(k): _no_surrogates(v) for k, v in value.items()}
    return value


def decode_body(body: bytes) -> object:
    """Parse the first JSON value; errors are 400 `bad request body: ...`."""
    scanner = _Scanner(body)
    try:
        start = scanner.space(0)
        end = scanner.first_value()
    except _Syntax as exc:
        raise BAD_REQUEST_BODY.wrap(str(exc)) from None
    raw = body[start:end]
    try:
        value = json.loads(raw.decode("utf-8", "gojson-replace"), parse_float=Number)
    except RecursionError:  # valid JSON nested deeper than Python's json module goes
        raise BAD_REQUEST_BODY.wrap("json: value nested too deeply") from None
    return _no_surrogates(value) if b"\\u" in raw else value


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
    if kind == "number" and go_type in ("int64", "float32"):
        kind = f"number {value}"  # Go quotes the literal: number 1.5, number 1e39
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
    """The body must be a JSON object (Go: cannot unmarshal array into Go value of type T).

    `null` decodes into a struct as a no-op in Go: every field keeps its default.
    """
    if value is None:
        return {}
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
        if kind == "float" and ok and not abs(float(value)) <= _FLOAT32_MAX:  # type: ignore[arg-type]
            ok = False
        if not ok:
            raise type_error(value, f"struct field {struct}.{name}", _GO_TYPES[kind])
    return found
