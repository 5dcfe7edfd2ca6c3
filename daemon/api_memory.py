"""The read-path routes: context packs, digests, recent events, timeline, forget.

Thin handlers over `MemoryService`. Parameters arrive as text and are parsed here, so a
malformed one is a 400 that names the parameter and the expected form (not a 422 dump).
Scopes: context and digest need memory:read; recent and timeline show raw events and
need memory:raw; forget needs memory:write.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body

from daemon.memory import MemoryService

FORGET_KEYS = ("since", "until", "source", "query", "dry_run")


def _int(name: str, value: str | None, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {value!r}") from None


def _when(name: str, value: Any) -> datetime | None:
    """An ISO 8601 time ('2026-03-04', '2026-03-04T10:00:00Z'); naive means UTC."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be an ISO 8601 time string, got {value!r}")
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name} must be an ISO 8601 time such as 2026-03-04 or "
                         f"2026-03-04T10:00:00Z, got {value!r}") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _day(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"date must be YYYY-MM-DD, got {value!r}") from None


def router(service: MemoryService, require: Any) -> APIRouter:
    r = APIRouter()

    @r.get("/v1/memory/context", dependencies=[require("memory:read")])
    def context(query: str = "", budget_tokens: str | None = None) -> dict[str, Any]:
        """A markdown context pack for `query` within `budget_tokens` (estimated tokens)."""
        if not query.strip():
            raise ValueError("query is empty; say what the context is for")
        if len(query) > 2000:
            raise ValueError("query is limited to 2000 characters")
        budget = _int("budget_tokens", budget_tokens, service.cfg.search.context_budget_tokens)
        return service.context(query, budget)

    @r.get("/v1/memory/digest", dependencies=[require("memory:read")])
    def digest(period: str = "day", date: str | None = None) -> dict[str, Any]:
        """The day or week digest holding `date` (default today)."""
        return service.digest(period, _day(date))

    @r.get("/v1/memory/recent", dependencies=[require("memory:raw")])
    def recent(limit: str | None = None, source: str | None = None) -> dict[str, Any]:
        return {"results": service.recent(_int("limit", limit, 20), source or None)}

    @r.get("/v1/memory/timeline", dependencies=[require("memory:raw")])
    def timeline(since: str | None = None, until: str | None = None,
                 source: str | None = None) -> dict[str, Any]:
        lo, hi = _when("since", since), _when("until", until)
        if lo is None and hi is None:
            raise ValueError("give since and/or until (ISO 8601) for a timeline")
        return {"results": service.timeline(lo, hi, source or None)}

    @r.post("/v1/memory/forget", dependencies=[require("memory:write")])
    def forget(body: Annotated[Any, Body()] = None) -> dict[str, Any]:
        """Delete by time range, source and/or query from the store, its indexes and the
        journal. Body: {"since", "until", "source", "query", "dry_run"} (all optional,
        at least one scope)."""
        if not isinstance(body, dict):
            raise ValueError('send a JSON object: {"since": ..., "until": ..., "source": ..., '
                             '"query": ..., "dry_run": false}')
        unknown = sorted(set(body) - set(FORGET_KEYS))
        if unknown:
            raise ValueError(f"unknown keys {unknown}; known: {', '.join(FORGET_KEYS)}")
        for key in ("source", "query"):
            if body.get(key) is not None and not isinstance(body[key], str):
                raise ValueError(f"{key} must be a string")
        dry = body.get("dry_run", False)
        if not isinstance(dry, bool):
            raise ValueError("dry_run must be true or false")
        return service.forget(since=_when("since", body.get("since")),
                              until=_when("until", body.get("until")),
                              source=body.get("source") or None,
                              query=body.get("query") or None, dry_run=dry)

    return r
