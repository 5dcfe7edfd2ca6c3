from __future__ import annotations

from datetime import UTC, datetime, timedelta

from collectors.base import Event
from daemon.chunking import chunk_events

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def at(minutes: float, source: str = "files") -> Event:
    return Event.new(ts=T0 + timedelta(minutes=minutes), source=source, kind="k",
                     subject=f"{source}/{minutes}")


def test_pauses_and_sources_split_chunks_and_the_open_chunk_waits() -> None:
    events = [at(0), at(1), at(2), at(30), at(31), at(1, "shell"), at(2, "shell")]
    now = T0 + timedelta(minutes=31, seconds=5)
    chunks = chunk_events(events, gap_seconds=300, max_events=40, now=now,
                          close_after_seconds=20, flush=False)
    sizes = sorted((c.source, len(c.events)) for c in chunks)
    # files 30–31 is still open (its last event is 5 s old); the others are closed
    assert sizes == [("files", 3), ("shell", 2)]
    flushed = chunk_events(events, gap_seconds=300, max_events=40, now=now,
                           close_after_seconds=20, flush=True)
    assert sorted(len(c.events) for c in flushed) == [2, 2, 3]


def test_full_chunks_close_and_ids_are_stable() -> None:
    events = [at(i / 10) for i in range(25)]
    now = T0 + timedelta(minutes=3)
    chunks = chunk_events(events, gap_seconds=300, max_events=10, now=now,
                          close_after_seconds=600, flush=False)
    assert [len(c.events) for c in chunks] == [10, 10]  # the last 5 are still open
    again = chunk_events(list(reversed(events)), gap_seconds=300, max_events=10, now=now,
                         close_after_seconds=600, flush=False)
    assert [c.id for c in chunks] == [c.id for c in again]
