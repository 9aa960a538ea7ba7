"""API errors with the exact messages and status codes of Toxiproxy v2."""

from __future__ import annotations

import errno
import json


class ApiError(Exception):
    """An error answered as `{"error": message, "status": code}`."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def body(self) -> bytes:
        """The body the real server writes (Go's http.Error appends a newline)."""
        return json_bytes({"error": self.message, "status": self.status}) + b"\n"

    def wrap(self, detail: str) -> ApiError:
        """`bad request body: <detail>`, like Go's joinError."""
        return ApiError(f"{self.message}: {detail}", self.status)


def json_bytes(value: object) -> bytes:
    """Compact JSON, the way Go's encoding/json writes it (no spaces, no HTML escapes)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


BAD_REQUEST_BODY = ApiError("bad request body", 400)
MISSING_FIELD = ApiError("missing required field", 400)
PROXY_NOT_FOUND = ApiError("proxy not found", 404)
PROXY_EXISTS = ApiError("proxy already exists", 409)
INVALID_STREAM = ApiError("stream was invalid, can be either upstream or downstream", 400)
INVALID_TOXIC_TYPE = ApiError("invalid toxic type", 400)
TOXIC_EXISTS = ApiError("toxic already exists", 409)
TOXIC_NOT_FOUND = ApiError("toxic not found", 404)

_GO_ERRNO_TEXT = {
    errno.EADDRINUSE: "address already in use",
    errno.EADDRNOTAVAIL: "cannot assign requested address",
    errno.EACCES: "permission denied",
}


def listen_error(address: str, exc: OSError) -> ApiError:
    """A 500 worded like Go's `listen tcp ADDR: bind: address already in use`."""
    text = _GO_ERRNO_TEXT.get(exc.errno or 0) or (exc.strerror or str(exc)).lower()
    return ApiError(f"listen tcp {address}: bind: {text}", 500)
