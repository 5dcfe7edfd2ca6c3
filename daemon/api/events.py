"""`POST /v1/events`: other programs push activity into memory.

An editor plugin, an agent or a script that knows what the user did sends events here
instead of writing a collector. They pass the same privacy gate as collected events
(exclusions, pause) and land in the intake journal, redacted, before the answer is sent:
a 200 means the events are durable. Sending the same event twice stores it once (ids are
stable hashes of source, subject and time, plus the caller's `key` when given).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from collectors.base import Batch, Event
from daemon.errors import InvalidRequest
from daemon.owners import journal_owner, owned_id
from daemon.service import MemoryService

RESERVED_SOURCES = frozenset({"files", "browser", "shell", "memory"})
_NOT_RESERVED: dict[str, Any] = {"not": {"enum": sorted(RESERVED_SOURCES)}}  # for the schema


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(pattern=r"^[a-z][a-z0-9_.-]{0,31}$",
                        description="who saw it: 'editor', 'agent.myname', …",
                        json_schema_extra=_NOT_RESERVED)
    kind: str = Field(pattern=r"^[a-z][a-z0-9_.-]{0,63}$", description="'editor.open', …")
    subject: str = Field(min_length=1, max_length=4096, description="a path, URL or command")
    ts: datetime | None = Field(None, description="when, with a time zone (default: now)")
    title: str = Field("", max_length=1000)
    text: str = Field("", max_length=100_000)
    attrs: dict[str, Any] = Field(default_factory=dict)
    key: str = Field("", max_length=200, description="the caller's own id, for idempotency")

    @field_validator("ts", mode="before")
    @classmethod
    def _text(cls, ts: Any) -> Any:
        # pydantic would take a number as Unix time; the schema says an ISO 8601 string
        if ts is not None and not isinstance(ts, str | datetime):
            raise ValueError("ts must be an ISO 8601 time string (e.g. 2026-11-26T09:30:00Z)")
        return ts

    @field_validator("ts")
    @classmethod
    def _aware(cls, ts: datetime | None) -> datetime | None:
        if ts is not None and ts.tzinfo is None:
            raise ValueError("ts needs a time zone (e.g. 2026-11-26T09:30:00Z)")
        return ts

    @field_validator("source")
    @classmethod
    def _not_a_collector(cls, source: str) -> str:
        if source in RESERVED_SOURCES:
            raise ValueError(f"source {source!r} belongs to memoryd's own collectors; "
                             "name your program instead")
        return source

    def to_event(self, now: datetime) -> Event:
        return Event.new(ts=self.ts or now, source=self.source, kind=self.kind,
                         subject=self.subject, title=self.title, text=self.text,
                         attrs=self.attrs, id_extra=self.key)


class EventsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1, max_length=1000)


def router(service: MemoryService, require: Any) -> APIRouter:
    api = APIRouter()

    @api.post("/v1/events", dependencies=[require("memory:write")])
    def push(body: EventsIn) -> dict[str, Any]:
        if service.intake is None:
            raise InvalidRequest("this memoryd takes no pushed events (no intake journal)")
        now = datetime.now(UTC)
        events = [e.to_event(now) for e in body.events]
        stored = service.intake.append(Batch("api", events))
        return {"received": len(events), "stored": stored,
                "ids": [owned_id(journal_owner(service.cfg), e.id) for e in events],
                "paused": bool(service.pause and service.pause.paused())}

    return api
