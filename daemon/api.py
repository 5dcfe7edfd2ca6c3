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
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse

from daemon.errors import RetryableError
from daemon.memory import MemoryService, hit_json

log = logging.getLogger(__name__)
ALLOWED_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
VERSION = "0.1.0"
# Features that bring their own routes: each module has
# `router(service, require) -> fastapi.APIRouter`, where `require(scope)` is the
# dependency for a route needing that scope: `dependencies=[require("memory:read")]`.
# A new feature is one line here.
FEATURE_ROUTERS: tuple[str, ...] = (
    "daemon.api_events",
)
# What a token may do. memory:read = search, digests, context; memory:raw = raw events
# and timeline; memory:write = forget, pause; complete = completions and embeddings;
# sync = push/pull between daemons; admin = everything, including telemetry and tokens.
SCOPES = ("memory:read", "memory:raw", "memory:write", "complete", "sync", "admin")


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status)


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


def create_app(service: MemoryService, token: str, max_request_bytes: int = 1_000_000) -> Any:
    app = FastAPI(title="memoryd", version=VERSION, docs_url=None, redoc_url=None)

    def require_token(request: Request) -> None:
        auth = request.headers.get("authorization", "")
        scheme, _, given = auth.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip(), token):
            raise _Unauthorized()

    def require(scope: str) -> Any:
        """The dependency guarding a route that needs `scope` (one of SCOPES)."""
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}")
        return Depends(require_token)

    @app.exception_handler(_Unauthorized)
    async def unauthorized(_: Request, __: Exception) -> JSONResponse:
        return _error(401, "unauthorized", "missing or wrong bearer token; read it from "
                      f"{service.cfg.token_path}")

    @app.exception_handler(ValueError)
    async def bad_request(_: Request, exc: Exception) -> JSONResponse:
        return _error(400, "invalid_request", str(exc))

    @app.exception_handler(RetryableError)
    async def unavailable(_: Request, exc: Exception) -> JSONResponse:
        return _error(503, "memory_unavailable", f"{exc}; try again shortly")

    @app.exception_handler(Exception)
    async def crashed(_: Request, exc: Exception) -> JSONResponse:
        log.exception("API request failed")
        return _error(500, "internal_error", f"{type(exc).__name__}: {exc}; see the daemon log")

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": VERSION}

    @app.get("/v1/memory/search", dependencies=[Depends(require_token)])
    def search(q: str = Query(..., min_length=1, max_length=2000, description="what to find"),
               k: int = Query(10, ge=1, le=200), source: str | None = None,
               since: datetime | None = None, until: datetime | None = None) -> dict[str, Any]:
        hits = service.search(q, k, source=source, since=since, until=until)
        return {"results": [hit_json(h) for h in hits]}

    @app.get("/v1/status", dependencies=[Depends(require_token)])
    def status() -> dict[str, Any]:
        return service.status()

    @app.post("/v1/pause", dependencies=[Depends(require_token)])
    def pause(minutes: float | None = Query(None, gt=0, le=7 * 24 * 60)) -> dict[str, Any]:
        if service.pause is None:
            raise ValueError("pause is not available")
        return {"paused": service.pause.pause(minutes, reason="api")}

    @app.post("/v1/resume", dependencies=[Depends(require_token)])
    def resume() -> dict[str, Any]:
        if service.pause is not None:
            service.pause.resume()
        return {"paused": None}

    for module in FEATURE_ROUTERS:
        app.include_router(importlib.import_module(module).router(service, require))
    return HostAndSizeGuard(app, max_request_bytes)


class _Unauthorized(Exception):
    pass
