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
