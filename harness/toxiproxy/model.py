"""Toxic definitions: types, attribute schemas, defaults, validation and JSON shape."""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from . import gojson
from .errors import INVALID_STREAM, INVALID_TOXIC_TYPE, TOXIC_EXISTS, ApiError

Stream = Literal["upstream", "downstream"]
STREAMS: tuple[Stream, Stream] = ("upstream", "downstream")

# Attribute names per toxic type, in the order the real server writes them.
TOXIC_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "latency": ("latency", "jitter"),
    "bandwidth": ("rate",),
    "slow_close": ("delay",),
    "timeout": ("timeout",),
    "reset_peer": ("timeout",),
    "slicer": ("average_size", "size_variation", "delay"),
    "limit_data": ("bytes",),
    "noop": (),
}
_GO_STRUCTS = {
    "latency": "LatencyToxic",
    "bandwidth": "BandwidthToxic",
    "slow_close": "SlowCloseToxic",
    "timeout": "TimeoutToxic",
    "reset_peer": "ResetToxic",
    "slicer": "SlicerToxic",
    "limit_data": "LimitDataToxic",
    "noop": "NoopToxic",
}


@dataclass(slots=True)
class ToxicSpec:
    """One toxic as the API knows it (mutable: updates change attributes and toxicity).

    `stream` is the direction; `spelling` is the stream as the client wrote it
    (`"UPSTREAM"`), which the real server echoes in every answer ("" = same as stream).
    """

    name: str
    type: str
    stream: Stream
    toxicity: float = 1.0
    attributes: dict[str, int] = field(default_factory=dict)
    spelling: str = ""

    def to_json(self) -> dict[str, object]:
        """Key order and number format of the real server."""
        return {
            "attributes": dict(self.attributes),
            "name": self.name,
            "type": self.type,
            "stream": self.spelling or self.stream,
            "toxicity": go_float32(self.toxicity),
        }

    def attr(self, name: str) -> int:
        return self.attributes.get(name, 0)


def go_float32(value: float) -> float | int:
    """The shortest decimal that round-trips through float32, as Go prints a float32."""
    as32: float = struct.unpack("f", struct.pack("f", value))[0]
    if as32.is_integer() and abs(as32) < 1e21:
        return int(as32)
    for digits in range(1, 10):
        candidate = float(f"{as32:.{digits}g}")
        if struct.unpack("f", struct.pack("f", candidate))[0] == as32:
            return candidate
    return as32


def parse_stream(value: str) -> Stream:
    lowered = value.lower()
    if lowered == "upstream":
        return "upstream"
    if lowered == "downstream":
        return "downstream"
    raise INVALID_STREAM


def parse_new_toxic(body: object, exists: Callable[[str], bool]) -> ToxicSpec:
    """A toxic from a create request, with the real server's defaults and order of checks."""
    obj = gojson.expect_object(body, "toxics.ToxicWrapper")
    top = gojson.typed_fields(
        obj,
        {"name": "string", "type": "string", "stream": "string", "toxicity": "float"},
        "ToxicWrapper",
    )
    stream_text = str(top.get("stream", "downstream"))
    stream = parse_stream(stream_text)
    toxic_type = str(top.get("type", ""))
    name = str(top.get("name", "")) or f"{toxic_type}_{stream_text}"
    if toxic_type not in TOXIC_ATTRIBUTES:
        raise INVALID_TOXIC_TYPE
    if exists(name):
        raise TOXIC_EXISTS
    toxicity = float(top.get("toxicity", 1.0))  # type: ignore[arg-type]
    attributes = parse_attributes(toxic_type, obj, {})
    spelling = "" if stream_text == stream else stream_text
    return ToxicSpec(name, toxic_type, stream, toxicity, attributes, spelling)


def parse_attributes(
    toxic_type: str, obj: Mapping[str, object], current: Mapping[str, int]
) -> dict[str, int]:
    """Merge the body's `attributes` into current (per field), then validate the result."""
    names = TOXIC_ATTRIBUTES[toxic_type]
    merged = {name: current.get(name, 0) for name in names}
    raw = gojson.fold_keys(obj, ("attributes",)).get("attributes")
    if raw is not None:
        if not isinstance(raw, dict):
            where = "struct field ToxicWrapper.attributes"
            raise gojson.type_error(raw, where, f"toxics.{_GO_STRUCTS[toxic_type]}")
        schema: dict[str, gojson.Kind] = dict.fromkeys(names, "int")
        struct_name = f"{_GO_STRUCTS[toxic_type]}.attributes"
        for key, value in gojson.typed_fields(raw, schema, struct_name).items():
            merged[key] = int(value)  # type: ignore[call-overload]
    validate_attributes(toxic_type, merged)
    return merged


def parse_update(spec: ToxicSpec, body: object) -> tuple[dict[str, int], float]:
    """New (attributes, toxicity) for an update; only those two fields can change."""
    obj = gojson.expect_object(body, "struct { Attributes interface {}; Toxicity float32 }")
    top = gojson.typed_fields(obj, {"toxicity": "float"}, "ToxicWrapper")
    toxicity = float(top.get("toxicity", spec.toxicity))  # type: ignore[arg-type]
    return parse_attributes(spec.type, obj, spec.attributes), toxicity


def validate_attributes(toxic_type: str, attrs: Mapping[str, int]) -> None:
    """Reject only what stalls, hangs or crashes the real server, saying why (400).

    Other negative values are harmless there and act as 0 (no delay, no jitter, limit_data
    closes at the first chunk, timeout never closes); the stages treat them the same way.
    """
    if toxic_type == "bandwidth":
        rate = attrs["rate"]
        if rate < 0:
            raise _invalid(toxic_type, "rate", rate, "> 0 (KB/s): a negative rate makes the "
                           "real server panic and exit")
        if rate == 0:
            raise _invalid(toxic_type, "rate", rate, "> 0 (KB/s): rate 0 stalls the link "
                           "for good; use timeout to stop data")
    if toxic_type == "slicer":
        average, variation = attrs["average_size"], attrs["size_variation"]
        if average <= 0:
            raise _invalid(toxic_type, "average_size", average, "> 0 (bytes): the real "
                           "server splits forever and never delivers")
        if variation > average:
            raise _invalid(toxic_type, "size_variation", variation, f"<= average_size "
                           f"({average}): larger cuts out of range and the real server panics")
        if average + variation <= 0:
            raise _invalid(toxic_type, "size_variation", variation, f"> -average_size "
                           f"({-average}): the real server splits forever and never delivers")


def _invalid(toxic_type: str, name: str, value: int, allowed: str) -> ApiError:
    return ApiError(
        f"invalid attribute {name}={value} for {toxic_type} toxic: must be {allowed}", 400
    )
