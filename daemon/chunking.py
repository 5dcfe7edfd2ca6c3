"""Group events into activity chunks: runs of one source with no long pause inside."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from collectors.base import Event


@dataclass(frozen=True)
class Chunk:
    events: tuple[Event, ...]

    @property
    def id(self) -> str:
        """Stable: the same events always make the same memory id."""
        h = hashlib.sha256("\x1f".join(sorted(e.id for e in self.events)).encode())
        return "m" + h.hexdigest()[:31]

    @property
    def start(self) -> datetime:
        return self.events[0].ts

    @property
    def end(self) -> datetime:
        return self.events[-1].ts

    @property
    def source(self) -> str:
        return self.events[0].source


def chunk_events(events: Iterable[Event], *, gap_seconds: float, max_events: int,
                 now: datetime, close_after_seconds: float, flush: bool) -> list[Chunk]:
    """Return the closed chunks among `events`.

    Events are split by source, then by pauses longer than `gap_seconds`, and at
    `max_events`. A chunk is closed (ready to summarize) when it is full, when more
    activity follows it, when its last event is older than `close_after_seconds`, or
    when `flush` is set (ingest --once).
    """
    by_source: dict[str, list[Event]] = {}
    for ev in sorted(events, key=lambda e: (e.ts, e.id)):
        by_source.setdefault(ev.source, []).append(ev)
    closed: list[Chunk] = []
    for evs in by_source.values():
        current: list[Event] = []
        runs: list[list[Event]] = []
        for ev in evs:
            if current and ((ev.ts - current[-1].ts).total_seconds() > gap_seconds
                            or len(current) >= max_events):
                runs.append(current)
                current = []
            current.append(ev)
        if current:
            runs.append(current)
        for i, run in enumerate(runs):
            last = i == len(runs) - 1
            quiet = (now - run[-1].ts).total_seconds() >= close_after_seconds
            if flush or not last or len(run) >= max_events or quiet:
                closed.append(Chunk(tuple(run)))
    return closed
