"""The localhost API (v1): thin handlers over the service layer.

Private by default: the guard in front of every route (daemon/api/guard.py) checks the
Host header (against DNS rebinding), the caller's token and the body's size before a
route runs; the routes check scopes; errors are JSON that says what to do
(daemon/api/envelope.py).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from daemon.api.auth import Authenticator, SessionOriginRefused, may_read_raw
from daemon.api.envelope import error_json
from daemon.api.guard import ROUTE_LIMITS, BodyLimits, Guard
from daemon.api.scoped_tokens import TokenStore
from daemon.api.sessions import SessionStore
from daemon.errors import InvalidRequest, MemorydError, RetryableError
from daemon.owners import OwnerForbidden, identity, request_owners
from daemon.recall.api import OWNER_PATTERN
from daemon.service import MemoryService, hit_json

log = logging.getLogger(__name__)
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
    return error_json(status, kind, message)


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
    """The API: memoryd's own routes and each feature's, behind the guard (Host, token,
    body limits; daemon/api/guard.py)."""
    app = FastAPI(title="memoryd", version=VERSION, docs_url=None, redoc_url=None,
                  responses=ERROR_RESPONSES)
    tokens = TokenStore(service.cfg.data_path / "tokens.json")
    if service.sessions is None:  # the status page's logins live as long as the service
        service.sessions = SessionStore()
    auth = Authenticator(token, tokens, identity(service.cfg)[1], service.sessions)
    require = _requirer(auth)
    _error_handlers(app, service)
    _core_routes(app, service, require)
    for module in FEATURE_ROUTERS:
        app.include_router(importlib.import_module(module).router(service, require))
    return Guard(app, auth, BodyLimits(max_request_bytes, ROUTE_LIMITS),
                 str(service.cfg.token_path))


def _requirer(auth: Authenticator) -> Callable[[str], Any]:
    """`require(scope)`: the dependency guarding a route that needs `scope` (one of
    SCOPES). The guard identified the caller before the body was read; the admin token
    and the status page's session pass every scope, a scoped token (`memoryd token
    create`) the scopes it was made with."""
    def require(scope: str) -> Any:
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}")

        async def check(request: Request) -> None:
            caller = getattr(request.state, "caller", None)
            if caller is None:  # only when mounted without the guard
                try:
                    caller = auth.identify(request.method, dict(request.headers))
                except SessionOriginRefused:
                    caller = None
            if caller is None:
                raise _Unauthorized()
            if not caller.may(scope):
                raise _Forbidden(scope)
            request.state.caller = caller
            # whose memories it reads (daemon/owners.py); handlers pass it to the service
            request.state.owners = caller.owners

        return Depends(check)

    return require


def _core_routes(app: Any, service: MemoryService, require: Callable[[str], Any]) -> None:
    """Health, search, status, pause and resume (the features add their own routers)."""
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
                              owners=request_owners(request), raw=may_read_raw(request))
        return {"results": [hit_json(h) for h in hits]}

    @app.get("/v1/status", dependencies=[require("memory:read")])
    def status(request: Request) -> dict[str, Any]:
        # daemon-wide details (paths, collectors, sync targets) are the admin's; any
        # other token learns whether memory is there and how much of it is its own
        if request.state.caller.may("admin"):
            return service.status()
        return service.own_status(request_owners(request), raw=may_read_raw(request))

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
