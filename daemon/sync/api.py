"""The /v1/sync routes, all behind the `sync` scope.

For this daemon's user: status, push, pull. For a peer daemon (HttpTransport): probe, the
spool's files (list, get, put with a SHA-256 check, delete), export (publish this
daemon's memory into the spool) and import (merge what the peer pushed, guard first).
"""

from __future__ import annotations

import socket
from typing import Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from daemon.api.envelope import error_json
from daemon.errors import ConfigError, PermanentError
from daemon.sync.guard import Refused
from daemon.sync.transport import NAME, TargetFull, TransportError, check_name, sha256


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return error_json(status, kind, message)


def _sync(service: Any) -> Any:
    if getattr(service, "sync", None) is None:
        from daemon.sync.service import SyncService

        service.sync = SyncService(service.cfg, service.engine,
                                   journal=getattr(service, "journal", None))
    return service.sync


def _guarded(fn: Any) -> Any:
    """Map sync errors to HTTP: no such target 404, refused 409, target full 507,
    retryable 503, permanent 400."""
    try:
        return fn()
    except ConfigError as exc:  # no target of that name (or none configured)
        return _error(404, "no_sync_target", str(exc))
    except Refused as exc:
        return _error(409, "refused", str(exc))
    except TargetFull as exc:
        return _error(507, "target_full", str(exc))
    except TransportError as exc:
        return _error(503, "sync_unavailable", str(exc))
    except PermanentError as exc:
        return _error(400, "invalid_request", str(exc))


# What /openapi.json says a spool file name is (transport.check_name enforces it).
FILE_NAME = Path(description="a plain file name, no path", json_schema_extra={
    "pattern": r"^(?!.*\.\.)(?!.*\.part-tmp$)" + NAME.pattern.lstrip("^")})
FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {}}, "description": "the file's bytes"},
    507: {"description": "the spool's disk is full"}}


def router(service: Any, require: Any) -> APIRouter:
    r = APIRouter(prefix="/v1/sync", dependencies=[require("sync")])

    @r.get("/status")
    def status() -> dict[str, Any]:
        return dict(_sync(service).status())

    @r.post("/push")
    def push(target: str | None = None, force: bool = False) -> Any:
        return _guarded(lambda: {"results": _sync(service).push(target, force)})

    @r.post("/pull")
    def pull(target: str | None = None, force: bool = False) -> Any:
        return _guarded(lambda: {"results": _sync(service).pull(target, force)})

    # -- for peers -----------------------------------------------------------------------

    @r.get("/probe")
    def probe() -> dict[str, Any]:
        _sync(service).spool().probe()
        return {"ok": True, "host": socket.gethostname(),
                "embedder": service.cfg.models.embedder}

    @r.get("/files")
    def files() -> dict[str, Any]:
        return {"files": _sync(service).spool().list()}

    @r.get("/files/{name}", response_class=Response, responses=FILE_RESPONSES)
    def get_file(name: str = FILE_NAME) -> Any:
        try:
            return Response(_sync(service).spool().get(check_name(name)),
                            media_type="application/octet-stream")
        except FileNotFoundError:
            return _error(404, "not_found", f"{name} is not in this daemon's sync spool")

    @r.put("/files/{name}", responses={507: FILE_RESPONSES[507]})
    async def put_file(request: Request, name: str = FILE_NAME) -> Any:
        check_name(name)
        data = await request.body()
        want = request.headers.get("x-memoryd-sha256", "")
        if want and want != sha256(data):
            return _error(400, "checksum_mismatch",
                          f"{name} arrived damaged (SHA-256 differs); send it again")
        return _guarded(lambda: (_sync(service).spool().put(name, data),
                                 {"name": name, "bytes": len(data)})[1])

    @r.delete("/files/{name}")
    def delete_file(name: str = FILE_NAME) -> dict[str, Any]:
        _sync(service).spool().delete(check_name(name))
        return {"deleted": name}

    @r.post("/export")
    def export(force: bool = False) -> Any:
        return _guarded(lambda: _sync(service).export_to_spool(force))

    @r.post("/import")
    def import_(force: bool = Query(False)) -> Any:
        return _guarded(lambda: _sync(service).import_from_spool(force))

    return r
