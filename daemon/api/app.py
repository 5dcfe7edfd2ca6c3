"""The localhost API (v1): thin handlers over the service layer.

Private by default: every /v1 route needs the bearer token, every request's Host header
must name this machine (against DNS rebinding), bodies are size-limited, and errors are
JSON that says what to do.
"""

from __future__ import annotations

import importlib
import logging
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from daemon.api.scoped_tokens import TokenStore
from daemon.errors import InvalidRequest, MemorydError, RetryableError
from daemon.owners import EVERYONE, OwnerForbidden, Owners, identity, request_owners
from daemon.recall.api import OWNER_PATTERN
from daemon.service import MemoryService, hit_json

log = logging.getLogger(__name__)
ALLOWED_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
VERSION = "0.1.0"
# Features that bring their own routes: each module has
# `router(service, require) -> fastapi.APIRouter`, where `require(scope)` is the
# dependency for a route needing that scope: `dependencies=[require("memory:read")]`.
# A new feature is one line here.
FEATURE_ROUTERS: tuple[str, ...] = (
    "daemon.routing.api",
    "daemon.recall.mcp",
    "daemon.sync.api",
    "daemon.api.events",
    "daemon.desktop.statuspage",
    "daemon.recall.api",
    "daemon.approvals.api",
)
# What a token may do. memory:read = search, digests, context; memory:raw = raw events
# and timeline; memory:write = forget, pause; complete = completions and embeddings;
# sync = push/pull between daemons; admin = everything, including telemetry and tokens.
SCOPES = ("memory:read", "memory:raw", "memory:write", "complete", "sync", "admin")


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status)


class _ErrorDetail(BaseModel):
    type: str
    message: str


class ErrorBody(BaseModel):
    """Every error the API returns: what went wrong and what to do next."""
    error: _ErrorDetail


# Documented on every operation in /openapi.json, so a client (and schemathesis) knows
# each error a route can answer with and its shape.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": why} for code, why in (
        (400, "the request is malformed; the message names the part and the expected form"),
        (401, "missing or wrong bearer token"),
        (403, "the token lacks the scope this route needs"),
        (404, "no such item"),
        (405, "method not allowed; `Allow` lists the methods this path takes"),
        (409, "refused in the daemon's current state (the message says why and how)"),
        (413, "the body is too large"),
        (421, "the Host header does not name this machine"),
        (503, "memory or a sync target is unavailable right now; retry shortly"),
    )}


class HostAndSizeGuard:
    """ASGI middleware: refuse foreign Host headers and oversized bodies before routing."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1").lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if host.startswith("[") and "]:" in host:
            name = host.split("]:", 1)[0] + "]"
        if name not in ALLOWED_HOSTS:
            resp = _error(421, "host_not_allowed",
                          f"Host {host!r} is not allowed; memoryd answers only to localhost")
            await resp(scope, receive, send)
            return
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            resp = _error(413, "too_large", f"request bodies are limited to {self.max_bytes} bytes")
            await resp(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _error_handlers(app: FastAPI, service: MemoryService) -> None:
    """How errors reach the caller (daemon/errors.py's tree is the contract)."""
    @app.exception_handler(_Forbidden)
    async def forbidden(_: Request, exc: Exception) -> JSONResponse:
        return _error(403, "forbidden", f"this token lacks the {exc} scope; make one that has "
                      f"it with `memoryd token create --scope {exc}`")

    @app.exception_handler(_Unauthorized)
    async def unauthorized(_: Request, __: Exception) -> JSONResponse:
        return _error(401, "unauthorized", "missing or wrong bearer token; read it from "
                      f"{service.cfg.token_path}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Starlette answers 405 with the methods of the first route on the path only;
        # list every method the path takes (GET, PUT and DELETE are separate routes).
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            path = request.url.path
            methods = sorted({m for route in app.router.routes
                              if (rx := getattr(route, "path_regex", None)) is not None
                              and rx.match(path) for m in getattr(route, "methods", None) or ()})
            headers["Allow"] = ", ".join(methods)
        resp = _error(exc.status_code, "http_error", str(exc.detail))
        resp.headers.update(headers)
        return resp

    @app.exception_handler(OwnerForbidden)
    async def not_yours(_: Request, exc: Exception) -> JSONResponse:
        return _error(403, "forbidden", str(exc))

    # Only memoryd's own errors (daemon/errors.py) speak to the caller as 4xx/503; any
    # other exception, a ValueError included, is memoryd's bug and a 500.
    @app.exception_handler(InvalidRequest)
    async def bad_request(_: Request, exc: Exception) -> JSONResponse:
        return _error(400, "invalid_request", str(exc))

    @app.exception_handler(RetryableError)
    async def unavailable(_: Request, exc: Exception) -> JSONResponse:
        return _error(503, "memory_unavailable", f"{exc}; try again shortly")

    @app.exception_handler(MemorydError)
    async def refused(_: Request, exc: Exception) -> JSONResponse:
        log.error("API request refused: %s", exc)
        return _error(500, "internal_error", f"{exc}")

    @app.exception_handler(Exception)
    async def crashed(_: Request, exc: Exception) -> JSONResponse:
        log.exception("API request failed")
        return _error(500, "internal_error", crash_message(exc, service.cfg.data_path))


def create_app(service: MemoryService, token: str, max_request_bytes: int = 1_000_000) -> Any:
    app = FastAPI(title="memoryd", version=VERSION, docs_url=None, redoc_url=None,
                  responses=ERROR_RESPONSES)

    def require_token(request: Request) -> None:
        # Step 1: a status-page browser session (daemon/sessions.py) counts as admin.
        if browser_session_ok(request):
            return
        auth = request.headers.get("authorization", "")
        scheme, _, given = auth.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip(), token):
            raise _Unauthorized()

    tokens = TokenStore(service.cfg.data_path / "tokens.json")

    def require(scope: str) -> Any:
        """The dependency guarding a route that needs `scope` (one of SCOPES): the admin
        token (or whatever `require_token` accepts) passes every scope; a scoped token
        (`memoryd token create`) passes the scopes it was made with."""
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}")

        async def check(request: Request) -> None:
            try:
                require_token(request)
                return
            except _Unauthorized:
                pass
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            given = given.strip()
            granted = tokens.scopes(given) if scheme.lower() == "bearer" and given else None
            if granted is None:
                raise _Unauthorized()
            if scope not in granted and "admin" not in granted:
                raise _Forbidden(scope)
            # whose memories it reads (daemon/owners.py); handlers pass it to the service
            owners = tokens.owners(given)
            if owners is None and not granted & {"admin", "sync"}:  # made before owners
                owners = Owners(users=(identity(service.cfg)[1],))
            request.state.owners = owners or EVERYONE

        return Depends(check)

    _error_handlers(app, service)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": VERSION}

    @app.get("/v1/memory/search", dependencies=[require("memory:read")])
    def search(request: Request, q: str = Query(..., min_length=1, max_length=2000,
                                                description="what to find",
                                                json_schema_extra={"pattern": r"\S"}),
               k: int = Query(10, ge=1, le=200), source: str | None = None,
               since: datetime | None = None, until: datetime | None = None,
               kind: str | None = None, project: str | None = None,
               device: str | None = Query(None, pattern=OWNER_PATTERN),
               user: str | None = Query(None, pattern=OWNER_PATTERN)) -> dict[str, Any]:
        hits = service.search(q, k, source=source, since=since, until=until, kind=kind,
                              project=project, device=device, user=user,
                              owners=request_owners(request))
        return {"results": [hit_json(h) for h in hits]}

    @app.get("/v1/status", dependencies=[require("memory:read")])
    def status() -> dict[str, Any]:
        return service.status()

    @app.post("/v1/pause", dependencies=[require("memory:write")])
    def pause(minutes: float | None = Query(None, gt=0, le=7 * 24 * 60)) -> dict[str, Any]:
        if service.pause is None:
            raise InvalidRequest("pause is not available")
        return {"paused": service.pause.pause(minutes, reason="api")}

    @app.post("/v1/resume", dependencies=[require("memory:write")])
    def resume() -> dict[str, Any]:
        if service.pause is not None:
            service.pause.resume()
        return {"paused": None}

    for module in FEATURE_ROUTERS:
        app.include_router(importlib.import_module(module).router(service, require))
    return HostAndSizeGuard(app, max_request_bytes)


def crash_message(exc: BaseException, data_dir: Path) -> str:
    """What a caller hit by memoryd's own bug is told: not its fault, and where to look."""
    return (f"memoryd failed on this request ({type(exc).__name__}: {exc}); this is a bug "
            "in memoryd, not a problem with the request. The traceback is in the daemon's "
            f"log: {data_dir / 'memoryd.log'} when started with `memoryd start`, "
            "`journalctl --user -u memoryd` under systemd, else the terminal running "
            "`memoryd run`")


class _Unauthorized(Exception):
    pass


class _Forbidden(Exception):
    """A valid token without the scope the route needs (the scope is the message)."""


def browser_session_ok(request: Request) -> bool:
    """Whether the request carries a live status-page session cookie (`memoryd open`).
    Its own step, separate from the bearer-token check: a session is the admin scope."""
    from daemon.api.sessions import COOKIE, STORE

    return STORE.valid(request.cookies.get(COOKIE))
