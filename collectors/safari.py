"""Safari history: `~/Library/Safari/History.db` (macOS only).

`history_items` holds one row per URL, `history_visits` one row per visit with the page
title as it was then. Visit times are a REAL of seconds since 2001-01-01 UTC (the
NSDate epoch). Safari records no transition type. The file is in WAL mode, so it is read
from a copy of History.db and History.db-wal. Reading it needs Full Disk Access for the
process that runs memoryd.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

FAMILY = "safari"
TABLES = {"history_items": frozenset({"id", "url"}),
          "history_visits": frozenset({"id", "history_item", "visit_time", "title",
                                       "redirect_destination", "load_successful"})}
VISITS_TABLE, TIME_COLUMN = "history_visits", "visit_time"

# Rows: visit id, URL, title, raw time, no transition, and whether the visit is not a
# page the user saw: a redirect's source (it has a destination) or a failed load.
VISITS_SQL = """
SELECT v.id, i.url, v.title, v.visit_time, NULL,
       v.redirect_destination IS NOT NULL OR v.load_successful = 0
FROM history_visits v JOIN history_items i ON i.id = v.history_item
WHERE v.id > ? ORDER BY v.id LIMIT ?
"""
_EPOCH = datetime(2001, 1, 1, tzinfo=UTC)


def find(where: Callable[[str], Path]) -> Iterator[tuple[Path, str, str]]:
    """Yield Safari's one history database, if this is a Mac that has it."""
    db = where("Library/Safari/History.db")
    if db.is_file():
        yield db, "safari", "default"


def to_utc(raw: float) -> datetime:
    """Given Safari's seconds since 2001-01-01 UTC, return an aware UTC datetime."""
    return _EPOCH + timedelta(seconds=float(raw))


def transition(raw: int | None) -> str | None:
    return None
