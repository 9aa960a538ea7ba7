"""A small HTTP/1.1 server on asyncio streams (keep-alive, Content-Length and chunked)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import unquote, urlsplit

from . import addresses

MAX_HEADER = 64 << 10
MAX_BODY = 16 << 20
# The real server sends no Server header; ours says what it is, so tests can tell them apart.
SERVER_HEADER = "Server: jobchaos-toxiproxy"


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str  # percent-decoded, as Go's URL.Path
    headers: dict[str, str]  # lower-cased names
    body: bytes
    query: str | None = None  # raw query; "" when the target ends with a bare "?"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Request], Awaitable[Response]]


class _BadRequest(Exception):
    pass


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise _BadRequest("incomplete request head") from None
        return None
    except asyncio.LimitOverrunError:
        raise _BadRequest("request head too large") from None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequest("malformed request line")
    method, target, version = parts
    headers: dict[str, str] = {"_version": version}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise _BadRequest("malformed header")
        headers[name.strip().lower()] = value.strip()
    body = await _read_body(reader, headers)
    if target.startswith("/"):  # origin form: "//x" is a path, not a host (as in Go)
        raw_path, sep, query = target.partition("?")
    else:
        split = urlsplit(target)
        raw_path, sep, query = split.path, "?" if split.query else "", split.query
    return Request(method, unquote(raw_path), headers, body, query if sep else None)


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            total += size
            if total > MAX_BODY:
                raise _BadRequest("body too large")
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return b"".join(chunks)
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
    length_text = headers.get("content-length", "0") or "0"
    if not length_text.isdigit() or int(length_text) > MAX_BODY:
        raise _BadRequest("bad content-length")
    return await reader.readexactly(int(length_text)) if int(length_text) else b""


def _encode(response: Response, keep_alive: bool) -> bytes:
    reason = HTTPStatus(response.status).phrase
    head = [
        f"HTTP/1.1 {response.status} {reason}",
        f"Date: {formatdate(usegmt=True)}",
        SERVER_HEADER,
    ]
    if response.content_type is not None:
        head.append(f"Content-Type: {response.content_type}")
    head.extend(f"{name}: {value}" for name, value in response.headers)
    if response.status not in (204, 304):
        head.append(f"Content-Length: {len(response.body)}")
    if not keep_alive:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body


def _wants_keep_alive(request: Request) -> bool:
    connection = request.headers.get("connection", "").lower()
    if request.headers.get("_version") == "HTTP/1.0":
        return connection == "keep-alive"
    return connection != "close"


async def _serve_connection(
    handler: Handler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while True:
            try:
                request = await _read_request(reader)
            except _BadRequest:
                writer.write(_encode(Response(400, b"400 Bad Request"), keep_alive=False))
                break
            if request is None:
                break
            if request.headers.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            keep_alive = _wants_keep_alive(request)
            response = await handler(request)
            writer.write(_encode(response, keep_alive))
            await writer.drain()
            if not keep_alive:
                break
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def start_http_server(handler: Handler, host: str, port: int) -> asyncio.Server:
    """Serve handler on host:port (port 0 picks a free one)."""

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve_connection(handler, reader, writer)

    sock, _ = await addresses.bind(addresses.join_host_port(host, port))
    return await asyncio.start_server(on_client, sock=sock, limit=MAX_HEADER)
