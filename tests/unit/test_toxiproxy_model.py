"""Pure parts of the embedded Toxiproxy: JSON decoding, validation, addresses, toxic math."""

from __future__ import annotations

import asyncio
import random

import pytest

from harness.toxiproxy import gojson
from harness.toxiproxy.addresses import join_host_port, split_host_port
from harness.toxiproxy.api import _match
from harness.toxiproxy.errors import ApiError
from harness.toxiproxy.model import ToxicSpec, go_float32, parse_new_toxic, parse_update
from harness.toxiproxy.toxics import Chunk, Latency, Slicer


def api_error(fn: object, *args: object) -> ApiError:
    with pytest.raises(ApiError) as info:
        fn(*args)  # type: ignore[operator]
    return info.value


@pytest.mark.parametrize(("body", "message"), [
    (b"", "bad request body: EOF"),
    (b"  \n", "bad request body: EOF"),
    (b'{"a": ', "bad request body: unexpected EOF"),
    (b"xyz", "bad request body: invalid character 'x' looking for beginning of value"),
    (b"nope", "bad request body: invalid character 'o' in literal null (expecting 'u')"),
])
def test_decode_body_errors_read_like_go(body: bytes, message: str) -> None:
    assert api_error(gojson.decode_body, body).message == message


def test_decode_reads_only_the_first_value() -> None:
    assert gojson.decode_body(b'{"a": 1} trailing') == {"a": 1}


def test_typed_fields_fold_case_ignore_unknown_and_nulls() -> None:
    got = gojson.typed_fields({"NAME": "x", "name": "y", "Listen": None, "other": 1},
                              {"name": "string", "listen": "string"}, "Proxy")
    assert got == {"name": "y"}
    err = api_error(gojson.typed_fields, {"name": 5}, {"name": "string"}, "Proxy")
    assert err.message == ("bad request body: json: cannot unmarshal number into Go struct "
                           "field Proxy.name of type string")


def test_new_toxic_defaults_and_order_of_checks() -> None:
    spec = parse_new_toxic({"type": "latency", "Stream": "UpStream"}, lambda n: False)
    assert (spec.name, spec.stream, spec.toxicity, spec.attributes) == (
        "latency_UpStream", "upstream", 1.0, {"latency": 0, "jitter": 0})
    # stream is checked before type, type before the name clash
    assert api_error(parse_new_toxic, {"type": "bad", "stream": "x"}, lambda n: True).status == 400
    assert api_error(parse_new_toxic, {"type": "bad"}, lambda n: True).message == \
        "invalid toxic type"
    assert api_error(parse_new_toxic, {"type": "noop"}, lambda n: True).status == 409


def test_attributes_must_be_integers() -> None:
    err = api_error(parse_new_toxic, {"type": "latency", "attributes": {"latency": 1.5}},
                    lambda n: False)
    assert "cannot unmarshal number 1.5 into Go struct field" in err.message
    err = api_error(parse_new_toxic, {"type": "latency", "attributes": {"latency": True}},
                    lambda n: False)
    assert err.status == 400


def test_update_merges_per_field_and_validates_the_result() -> None:
    spec = ToxicSpec("s", "slicer", "downstream", 1.0,
                     {"average_size": 10, "size_variation": 2, "delay": 5})
    attrs, toxicity = parse_update(spec, {"attributes": {"delay": 7}})
    assert (attrs, toxicity) == ({"average_size": 10, "size_variation": 2, "delay": 7}, 1.0)
    assert api_error(parse_update, spec, {"attributes": {"average_size": 1}}).status == 400
    assert spec.attributes["average_size"] == 10


@pytest.mark.parametrize(("value", "shown"), [(1.0, 1), (0.5, 0.5), (0.3, 0.3), (0.1, 0.1),
                                              (0.123456789, 0.12345679)])
def test_toxicity_is_printed_like_a_go_float32(value: float, shown: float) -> None:
    assert go_float32(value) == shown
    assert type(go_float32(value)) is type(shown)


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:80", ("127.0.0.1", 80)), ("[::1]:9", ("::1", 9)), (":0", ("", 0)),
    ("localhost:", ("localhost", 0)), ("", ("", 0)),
])
def test_split_host_port(text: str, expected: tuple[str, int]) -> None:
    assert split_host_port(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("nonsense", "address nonsense: missing port in address"),
    ("::1:80", "address ::1:80: too many colons in address"),
    ("h:http", "address h:http: invalid port"),
])
def test_split_host_port_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_host_port(text)


def test_join_host_port() -> None:
    assert join_host_port("::1", 5) == "[::1]:5"
    assert join_host_port("127.0.0.1", 5) == "127.0.0.1:5"


def test_routes_match_like_gorilla_mux() -> None:
    assert _match("/proxies/a/toxics/b") is not None
    assert _match("/proxies/a/toxics/b")[1] == ("a", "b")  # type: ignore[index]
    for path in ("/proxies/", "//proxies", "/proxies/a/", "/x", "proxies"):
        assert _match(path) is None


class FakeLink:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.terminated = False

    def terminate(self, *, reset: bool = False) -> None:
        self.terminated = True


def _slices(seed: int, data: bytes) -> list[bytes]:
    loop = asyncio.new_event_loop()
    try:
        spec = ToxicSpec("s", "slicer", "downstream", 1.0,
                         {"average_size": 8, "size_variation": 4, "delay": 0})
        stage = Slicer(spec, FakeLink(seed), loop)
        stage.start()
        out: list[bytes] = []

        async def emit(chunk: Chunk) -> None:
            out.append(chunk.data)

        loop.run_until_complete(stage.pipe(Chunk(data, 0.0), emit))
        return out
    finally:
        loop.close()


def test_slicer_is_replayable_with_a_seed_and_keeps_every_byte() -> None:
    data = bytes(range(256)) * 4
    first, again, other = _slices(1, data), _slices(1, data), _slices(2, data)
    assert first == again and first != other
    assert b"".join(first) == data == b"".join(other)
    assert all(0 < len(piece) <= 8 + 4 for piece in first)


def test_latency_jitter_draws_come_from_the_link_rng() -> None:
    loop = asyncio.new_event_loop()
    try:
        spec = ToxicSpec("l", "latency", "downstream", 1.0, {"latency": 0, "jitter": 0})
        stage = Latency(spec, FakeLink(3), loop)
        stage.start()
        out: list[float] = []

        async def emit(chunk: Chunk) -> None:
            out.append(chunk.ts)

        loop.run_until_complete(stage.pipe(Chunk(b"x", loop.time()), emit))
        assert len(out) == 1 and not stage.link.terminated  # type: ignore[attr-defined]
    finally:
        loop.close()
