"""The gate in front of every route (ASGI middleware), on the Unix socket and TCP alike.

In this order, before a route runs and before a byte of the body is read:
  1. Host: exactly one header, a plain host with an optional port, naming this machine
     (ALLOWED_HOSTS), against DNS rebinding: anything else is 421.
  2. The caller (daemon/api/auth.py): a valid token, or the status page's session from
     its own origin, unless the route is PUBLIC: 401 (403 for a session cookie sent by
     another origin). The caller is left in the request's state for the scope checks.
  3. The body: read here, chunked or with a Content-Length, and never past the route's
     limit (413); JSON nested deeper than MAX_JSON_DEPTH is refused (400) before any
     parser recurses into it. The route then receives the body from memory.
A refusal closes the connection, so a body that was not read is never read at all: a
flood of large requests without a token costs the daemon nothing but the headers.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from daemon.api.auth import Authenticator, SessionOriginRefused, header_map
from daemon.api.envelope import error_json

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ALLOWED_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})
_HOST = re.compile(r"(?P<name>[a-z0-9.-]+|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?")
# Routes anyone on this machine may call: they read nothing and take no body.
PUBLIC = frozenset({"/health", "/openapi.json", "/ui/login", "/ui/logout"})
MAX_JSON_DEPTH = 64
# A peer's snapshot parts (daemon/sync/snapshot.py: PART_BYTES, 512 KB) have their own
# limit, whatever [api] max_request_bytes says of the other routes.
SYNC_FILE_BYTES = 1_000_000
ROUTE_LIMITS: tuple[tuple[str, str, int], ...] = (("PUT", "/v1/sync/files/", SYNC_FILE_BYTES),)
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


@dataclass(frozen=True)
class BodyLimits:
    """How many body bytes each route takes: `default`, or the first matching
    (method, path prefix, bytes) override; public routes take none."""
    default: int
    overrides: tuple[tuple[str, str, int], ...] = ()

    def of(self, method: str, path: str) -> int:
        if path in PUBLIC:
            return 0
        for m, prefix, size in self.overrides:
            if m == method and path.startswith(prefix):
                return size
        return self.default


class _Refused(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def _too_large(path: str, limit: int) -> _Refused:
    return _Refused(413, "too_large", f"request bodies to {path} are limited to {limit} bytes")


def host_allowed(values: list[bytes]) -> bool:
    """Whether the request's Host headers are exactly one plain, allowed host[:port]."""
    if len(values) != 1:
        return False
    match = _HOST.fullmatch(values[0].decode("latin-1").lower())
    return match is not None and match["name"] in ALLOWED_HOSTS


def too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON text nests arrays/objects deeper than `limit` (brackets inside
    strings do not count). Not a parser: text that is not JSON may pass, to fail later."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for c in _STRING.sub(b"", body).translate(None, _NOT_BRACKETS):
        depth += 1 if c in (0x5B, 0x7B) else -1
        if depth > limit:
            return True
    return False


class Guard:
    """The ASGI middleware; `token_path` is named in the 401's advice."""

    def __init__(self, app: Any, auth: Authenticator, limits: BodyLimits,
                 token_path: str) -> None:
        self.app, self.auth, self.limits, self.token_path = app, auth, limits, token_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self._check_headers(scope)
            body = await self._read_body(scope, receive)
        except _Refused as no:
            await error_json(no.status, no.kind, no.message, close=True)(scope, receive, send)
            return
        if body is None:  # the client went away mid-body
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)

    def _check_headers(self, scope: Scope) -> None:
        raw = scope.get("headers") or []
        if not host_allowed([v for k, v in raw if k.lower() == b"host"]):
            raise _Refused(421, "host_not_allowed", "the Host header must be exactly one of "
                           "localhost, 127.0.0.1 or [::1] (with a port or not); memoryd "
                           "answers only to this machine")
        path = scope.get("path", "")
        if path in PUBLIC:
            return
        try:
            caller = self.auth.identify(scope.get("method", "GET"), header_map(raw))
        except SessionOriginRefused:
            raise _Refused(403, "foreign_origin", "the status page's session is accepted "
                           "only from the status page itself; other programs send the "
                           "bearer token") from None
        if caller is None:
            raise _Refused(401, "unauthorized", "missing or wrong bearer token; read it "
                           f"from {self.token_path}")
        scope.setdefault("state", {})["caller"] = caller

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        method, path = scope.get("method", "GET"), scope.get("path", "")
        limit = self.limits.of(method, path)
        headers = header_map(scope.get("headers") or [])
        length = headers.get("content-length")
        if length is not None and (not length.strip().isdigit() or int(length) > limit):
            raise _too_large(path, limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                chunks.clear()  # freed now, not when the traceback's frames are collected
                raise _too_large(path, limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and "octet-stream" not in headers.get("content-type", "") and too_deep(body):
            raise _Refused(400, "invalid_request", f"JSON nested deeper than {MAX_JSON_DEPTH} "
                           "levels; flatten the request")
        return body
