"""The read-path routes: context packs, digests, recent events, timeline, forget.

Thin handlers over `MemoryService`. Parameters arrive as text and are parsed here, so a
malformed one is a 400 that names the parameter and the expected form (not a 422 dump).
Scopes: context and digest need memory:read (memories and digests; raw events only with
memory:raw as well); recent and timeline show raw events and
need memory:raw; forget needs memory:write.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import Response

from daemon.api.auth import may_read_raw
from daemon.errors import InvalidRequest
from daemon.owners import request_owners
from daemon.service import MemoryService

FORGET_KEYS = ("since", "until", "source", "query", "dry_run", "device", "user")
TIMELINE_DEFAULT = timedelta(days=1)  # a timeline asked without a range: the last day

# The handlers parse their parameters themselves (a clear 400, not a 422 dump); these
# schemas only document in /openapi.json what they accept, so clients and schemathesis
# know which requests are valid.
_TEXT = {"type": "string", "minLength": 1, "maxLength": 2000, "pattern": r"\S"}
_WHEN = {"anyOf": [{"type": "string", "format": "date-time"},
                   {"type": "string", "format": "date"}]}
# who wrote it (daemon/owners.py): one name or several, comma-separated
# exactly what daemon/owners.py accepts: `*`, or names separated by commas
_ONE_OWNER = r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}"
OWNER_PATTERN = rf"^(\*|{_ONE_OWNER}(,{_ONE_OWNER})*)$"
_OWNER = {"type": "string", "pattern": OWNER_PATTERN}
FORGET_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "properties": {"since": _WHEN, "until": _WHEN, "source": _TEXT,
                   "query": _TEXT, "dry_run": {"type": "boolean"},
                   "device": _OWNER, "user": _OWNER},
    # at least one condition: forget never means "everything"
    "anyOf": [{"required": [k]} for k in ("since", "until", "source", "query")],
}


# Typed, bounded query parameters; a bad one is answered as the caller's 400 naming it
# (see _ClearErrors), as the hand-parsed ones are.
RANGES = {"budget_tokens": (64, 200_000), "limit": (1, 1000)}


def _bounded(name: str, description: str) -> Any:
    lo, hi = RANGES[name]
    return Query(None, ge=lo, le=hi, description=description)


def _say(errors: Sequence[Any]) -> str | None:
    """The 400 message for a bad bounded parameter, or None for any other error."""
    for e in errors:
        name = e.get("loc", ("",))[-1]
        if name not in RANGES:
            continue
        lo, hi = RANGES[name]
        if "parsing" in str(e.get("type")):
            return f"{name} must be a whole number, got {e.get('input')!r}"
        return f"{name} must be between {lo} and {hi}"
    return None


class _ClearErrors(APIRoute):
    """A route whose bounded parameters (RANGES) fail as InvalidRequest (a 400 that names
    the parameter and its range), not as FastAPI's 422 dump."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                message = _say(exc.errors())
                if message is None:
                    raise
                raise InvalidRequest(message) from None

        return route


def _when(name: str, value: Any) -> datetime | None:
    """An ISO 8601 time ('2026-03-04', '2026-03-04T10:00:00Z'); naive means UTC."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be an ISO 8601 time string, got {value!r}")
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"{name} must be an ISO 8601 time such as 2026-03-04 or "
                             f"2026-03-04T10:00:00Z, got {value!r}") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"date must be YYYY-MM-DD, got {value!r}") from None


def _forget_args(body: Any) -> dict[str, Any]:
    """The keyword arguments of `MemoryService.forget` from a /v1/memory/forget body;
    raise InvalidRequest naming what is wrong."""
    if not isinstance(body, dict):
        raise InvalidRequest('send a JSON object: {"since": ..., "until": ..., "source": ..., '
                             '"query": ..., "dry_run": false}')
    unknown = sorted(set(body) - set(FORGET_KEYS))
    if unknown:
        raise InvalidRequest(f"unknown keys {unknown}; known: {', '.join(FORGET_KEYS)}")
    for key in ("device", "user"):
        if isinstance(body.get(key), str) and not re.match(OWNER_PATTERN, body[key]):
            raise InvalidRequest(f"{key} must be * or names separated by commas (letters, "
                                 "digits and . _ @ + -, at most 64 each)")
    nulls = sorted(k for k, v in body.items() if v is None)
    if nulls:
        raise InvalidRequest(f"leave out {', '.join(nulls)} rather than sending null")
    for key in ("source", "query", "device", "user"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise InvalidRequest(f"{key} must be a string")
        if isinstance(body.get(key), str) and not body[key].strip():
            raise InvalidRequest(f"{key} is blank; leave it out or say what to match")
        if isinstance(body.get(key), str) and len(body[key]) > 2000:
            raise InvalidRequest(f"{key} is limited to 2000 characters")
    dry = body.get("dry_run", False)
    if not isinstance(dry, bool):
        raise InvalidRequest("dry_run must be true or false")
    return {"since": _when("since", body.get("since")),
            "until": _when("until", body.get("until")),
            "source": body.get("source") or None, "query": body.get("query") or None,
            "dry_run": dry, "device": body.get("device") or None,
            "user": body.get("user") or None}


def router(service: MemoryService, require: Any) -> APIRouter:
    r = APIRouter(route_class=_ClearErrors)

    @r.get("/v1/memory/context", dependencies=[require("memory:read")])
    def context(request: Request, query: str = Query(..., json_schema_extra=_TEXT),
                budget_tokens: int | None = _bounded("budget_tokens", "64 to 200000"),
                device: str | None = Query(None, pattern=OWNER_PATTERN),
                user: str | None = Query(None, pattern=OWNER_PATTERN),
                ) -> dict[str, Any]:
        """A markdown context pack for `query` within `budget_tokens` (estimated tokens)."""
        if not query.strip():
            raise InvalidRequest("query is empty; say what the context is for")
        if len(query) > 2000:
            raise InvalidRequest("query is limited to 2000 characters")
        budget = budget_tokens or service.cfg.search.context_budget_tokens
        return service.context(query, budget, device=device, user=user,
                               owners=request_owners(request), raw=may_read_raw(request))

    @r.get("/v1/memory/digest", dependencies=[require("memory:read")])
    def digest(request: Request,
               period: str = Query("day", json_schema_extra={"enum": ["day", "week"]}),
               date: str | None = Query(None, json_schema_extra={"format": "date"}),
               device: str | None = Query(None, pattern=OWNER_PATTERN),
               user: str | None = Query(None, pattern=OWNER_PATTERN),
               ) -> dict[str, Any]:
        """The day or week digest holding `date` (default today)."""
        return service.digest(period, _day(date), device=device, user=user,
                              owners=request_owners(request))

    @r.get("/v1/memory/recent", dependencies=[require("memory:raw")])
    def recent(request: Request,
               limit: int | None = _bounded("limit", "1 to 1000 (default 20)"),
               source: str | None = None,
               device: str | None = Query(None, pattern=OWNER_PATTERN),
               user: str | None = Query(None, pattern=OWNER_PATTERN)) -> dict[str, Any]:
        return {"results": service.recent(limit or 20, source or None,
                                          device=device, user=user,
                                          owners=request_owners(request))}

    @r.get("/v1/memory/timeline", dependencies=[require("memory:raw")])
    def timeline(request: Request, since: str | None = Query(None, json_schema_extra=_WHEN),
                 until: str | None = Query(None, json_schema_extra=_WHEN),
                 source: str | None = None,
                 device: str | None = Query(None, pattern=OWNER_PATTERN),
                 user: str | None = Query(None, pattern=OWNER_PATTERN)) -> dict[str, Any]:
        """Raw events in [since, until) (ISO 8601); without either, the last day."""
        lo, hi = _when("since", since), _when("until", until)
        if lo is None and hi is None:
            lo = datetime.now(UTC) - TIMELINE_DEFAULT
        return {"results": service.timeline(lo, hi, source or None, device=device, user=user,
                                            owners=request_owners(request))}

    _forget_route(r, service, require)
    return r


def _forget_route(r: APIRouter, service: MemoryService, require: Any) -> None:
    @r.post("/v1/memory/forget", dependencies=[require("memory:write")], openapi_extra={
        "requestBody": {"required": True,
                        "content": {"application/json": {"schema": FORGET_SCHEMA}}}})
    def forget(request: Request, body: Annotated[Any, Body()] = None) -> dict[str, Any]:
        """Delete by time range, source and/or query from the store, its indexes and the
        journal. Body: {"since", "until", "source", "query", "dry_run"} (all optional,
        at least one scope)."""
        return service.forget(**_forget_args(body), owners=request_owners(request))
