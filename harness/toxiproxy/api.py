"""The Toxiproxy v2 HTTP API: routes, handlers and the proxy collection."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import quote

from . import gojson
from .errors import (
    MISSING_FIELD,
    PROXY_EXISTS,
    PROXY_NOT_FOUND,
    TOXIC_NOT_FOUND,
    ApiError,
    json_bytes,
)
from .httpserver import Request, Response
from .model import parse_new_toxic, parse_update
from .proxy import Proxy

VERSION = "2.12.0"
log = logging.getLogger("harness.toxiproxy")

_PROXY_FIELDS: dict[str, gojson.Kind] = {
    "name": "string",
    "listen": "string",
    "upstream": "string",
    "enabled": "bool",
}
_POPULATE_TYPE = '[]struct { toxiproxy.Proxy; Enabled *bool "json:\\"enabled\\"" }'
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"

Params = tuple[str, ...]
Route = Callable[["Api", Request, Params], Awaitable[Response]]


def _json(status: int, value: object) -> Response:
    return Response(status, json_bytes(value), _JSON)


def _error(err: ApiError) -> Response:
    return Response(err.status, err.body(), _TEXT)


def _proxy_fields(body: object, go_type: str) -> dict[str, object]:
    return gojson.typed_fields(gojson.expect_object(body, go_type), _PROXY_FIELDS, "Proxy")


class Api:
    """Holds every proxy; one instance per server process."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self.proxies: dict[str, Proxy] = {}

    # dispatch --------------------------------------------------------------------
    async def handle(self, request: Request) -> Response:
        cleaned = clean_path(request.path)
        if cleaned != request.path:  # gorilla/mux redirects before routing, any method
            return Response(301, headers=(("Location", _location(cleaned, request.query)),))
        found = _match(request.path)
        if found is None:
            return Response(404, b"404 page not found\n", _TEXT)
        methods, params = found
        route = methods.get(request.method)
        if route is None:
            return Response(405)
        if request.headers.get("user-agent", "").startswith("Mozilla/"):
            return Response(403, b"User agent not allowed\n", _TEXT)
        try:
            return await route(self, request, params)
        except ApiError as err:
            return _error(err)
        except Exception as exc:  # the real server answers 500 with the error text
            log.exception("toxiproxy API: %s %s failed", request.method, request.path)
            return _error(ApiError(str(exc) or type(exc).__name__, 500))

    def _proxy(self, name: str) -> Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise PROXY_NOT_FOUND
        return proxy

    # proxies ----------------------------------------------------------------------
    async def proxy_index(self, request: Request, params: Params) -> Response:
        return _json(200, {name: self.proxies[name].to_json() for name in sorted(self.proxies)})

    async def proxy_create(self, request: Request, params: Params) -> Response:
        fields = _proxy_fields(gojson.decode_body(request.body), "toxiproxy.Proxy")
        proxy = await self.create(fields)
        return _json(201, proxy.to_json())

    async def create(self, fields: Mapping[str, object]) -> Proxy:
        name, upstream = str(fields.get("name", "")), str(fields.get("upstream", ""))
        if not name:
            raise MISSING_FIELD.wrap("name")
        if not upstream:
            raise MISSING_FIELD.wrap("upstream")
        if name in self.proxies:
            raise PROXY_EXISTS
        proxy = Proxy(name, str(fields.get("listen", "")), upstream, self.seed)
        if fields.get("enabled", True):
            await proxy.start()
        self.proxies[name] = proxy
        return proxy

    async def populate(self, request: Request, params: Params) -> Response:
        """Every answer, errors included, is `{["error", "status",] "proxies"}` (no newline)."""
        done: list[Proxy] = []
        try:
            for entry in _populate_entries(gojson.decode_body(request.body)):
                done.append(await self._add_or_replace(entry))
        except ApiError as err:
            out = [p.to_json() for p in done] or None
            return _json(err.status, {"error": err.message, "status": err.status, "proxies": out})
        return _json(201, {"proxies": [p.to_json() for p in done] or None})

    async def _add_or_replace(self, entry: Mapping[str, object]) -> Proxy:
        name, listen = str(entry["name"]), str(entry.get("listen", ""))
        upstream = str(entry["upstream"])
        existing = self.proxies.get(name)
        if existing is not None:
            if not await existing.differs(listen, upstream):
                return existing
            existing.stop()
        proxy = Proxy(name, listen, upstream, self.seed)
        if entry.get("enabled", True):
            await proxy.start()
        self.proxies[name] = proxy
        return proxy

    async def proxy_show(self, request: Request, params: Params) -> Response:
        return _json(200, self._proxy(params[0]).to_json())

    async def proxy_update(self, request: Request, params: Params) -> Response:
        proxy = self._proxy(params[0])
        fields = _proxy_fields(gojson.decode_body(request.body), "toxiproxy.Proxy")
        await proxy.update(
            str(fields.get("listen", proxy.listen)),
            str(fields.get("upstream", proxy.upstream)),
            bool(fields.get("enabled", proxy.enabled)),
        )
        return _json(200, proxy.to_json())

    async def proxy_delete(self, request: Request, params: Params) -> Response:
        self._proxy(params[0]).stop()
        del self.proxies[params[0]]
        return Response(204)

    async def reset(self, request: Request, params: Params) -> Response:
        for proxy in list(self.proxies.values()):
            await proxy.start()
            proxy.reset_toxics()
        return Response(204)

    async def version(self, request: Request, params: Params) -> Response:
        body = f'{{"version": "{VERSION}"}}\n'.encode()
        return Response(200, body, "application/json;charset=utf-8")

    # toxics ----------------------------------------------------------------------
    async def toxic_index(self, request: Request, params: Params) -> Response:
        return _json(200, [t.to_json() for t in self._proxy(params[0]).toxic_list()])

    async def toxic_create(self, request: Request, params: Params) -> Response:
        proxy = self._proxy(params[0])
        body = gojson.decode_body(request.body)
        spec = parse_new_toxic(body, lambda name: proxy.find_toxic(name) is not None)
        proxy.add_toxic(spec)
        return _json(200, spec.to_json())

    async def toxic_show(self, request: Request, params: Params) -> Response:
        spec = self._proxy(params[0]).find_toxic(params[1])
        if spec is None:
            raise TOXIC_NOT_FOUND
        return _json(200, spec.to_json())

    async def toxic_update(self, request: Request, params: Params) -> Response:
        proxy = self._proxy(params[0])
        spec = proxy.find_toxic(params[1])
        if spec is None:
            raise TOXIC_NOT_FOUND
        attributes, toxicity = parse_update(spec, gojson.decode_body(request.body))
        proxy.update_toxic(spec, attributes, toxicity)
        return _json(200, spec.to_json())

    async def toxic_delete(self, request: Request, params: Params) -> Response:
        proxy = self._proxy(params[0])
        spec = proxy.find_toxic(params[1])
        if spec is None:
            raise TOXIC_NOT_FOUND
        proxy.remove_toxic(spec)
        return Response(204)

    async def close(self) -> None:
        for proxy in self.proxies.values():
            proxy.stop()


def _populate_entries(body: object) -> list[dict[str, object]]:
    """Decode and validate every entry before anything is created (`null` is no entry)."""
    if body is None:
        return []
    if not isinstance(body, list):
        kind = gojson.json_type(body)
        msg = f"json: cannot unmarshal {kind} into Go value of type {_POPULATE_TYPE}"
        raise ApiError(f"bad request body: {msg}", 400)
    entries = [_proxy_fields(item, _POPULATE_TYPE[2:]) for item in body]
    for number, entry in enumerate(entries, start=1):
        for field in ("name", "upstream"):
            if not entry.get(field):
                raise MISSING_FIELD.wrap(f"{field} at proxy {number}")
    return entries


_ROUTES: dict[tuple[str, ...], dict[str, Route]] = {
    ("reset",): {"POST": Api.reset},
    ("proxies",): {"GET": Api.proxy_index, "POST": Api.proxy_create},
    ("populate",): {"POST": Api.populate},
    ("version",): {"GET": Api.version},
    ("proxies", "*"): {
        "GET": Api.proxy_show,
        "POST": Api.proxy_update,
        "PATCH": Api.proxy_update,
        "DELETE": Api.proxy_delete,
    },
    ("proxies", "*", "toxics"): {"GET": Api.toxic_index, "POST": Api.toxic_create},
    ("proxies", "*", "toxics", "*"): {
        "GET": Api.toxic_show,
        "POST": Api.toxic_update,
        "PATCH": Api.toxic_update,
        "DELETE": Api.toxic_delete,
    },
}


def clean_path(path: str) -> str:
    """gorilla/mux's cleanPath: Go's path.Clean on a rooted path, trailing slash kept."""
    if not path.startswith("/"):
        path = "/" + path
    parts: list[str] = []
    for part in path.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    cleaned = "/" + "/".join(parts)
    if path.endswith("/") and cleaned != "/":
        cleaned += "/"
    return cleaned


def _location(path: str, query: str | None) -> str:
    """Go's URL.String() for a request URL whose path was replaced (query kept)."""
    escaped = quote(path, safe="/$&+,:;=@")
    return escaped if query is None else f"{escaped}?{query}"


def _match(path: str) -> tuple[dict[str, Route], Params] | None:
    """The routes for path and its {proxy}/{toxic} values (gorilla/mux `[^/]+`)."""
    if not path.startswith("/"):
        return None
    parts = path[1:].split("/")
    if "" in parts:
        return None
    for pattern, methods in _ROUTES.items():
        if len(pattern) != len(parts):
            continue
        if all(p == "*" or p == part for p, part in zip(pattern, parts, strict=True)):
            params = tuple(part for p, part in zip(pattern, parts, strict=True) if p == "*")
            return methods, params
    return None
