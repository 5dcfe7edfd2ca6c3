"""A search hit: the light value type that crosses from the worker to the API and CLI."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Hit:
    id: str
    table: str  # "events" or "memories"
    source: str
    kind: str
    ts: datetime
    title: str
    text: str
    score: float
    event_ids: tuple[str, ...] = ()
    # Read-path additions (all optional, so older callers keep working):
    ts_end: datetime | None = None  # a memory's period end
    project: str = ""
    memory_ids: tuple[str, ...] = ()  # a digest's sources: the memories it came from
    covers: tuple[Hit, ...] = ()  # matching hits folded into this one by de-duplication
    device: str = ""  # who wrote it (store schema 3; daemon/owners.py)
    user: str = ""
    subject: str = ""  # an event's path, URL or command: what makes two events the same thing
