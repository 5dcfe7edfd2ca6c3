"""Store rows as search hits: the columns a `Hit` is made of, and the hit made of a row.

A search reads only these columns (not the vector, the `doc` it was found by, an
event's attrs or a memory's model): at 100k memories, reading and converting every
column of 50 rows cost more than finding them. Only the worker and the reader import
this module (through daemon/store/lance.py).
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from daemon.recall.hits import Hit
from daemon.store.schema import memory_text

EVENT_COLUMNS = ("id", "ts", "source", "kind", "subject", "title", "text", "device", "user")
MEMORY_COLUMNS = ("id", "ts", "ts_end", "level", "source", "title", "text", "event_ids",
                  "project", "sources", "identifiers", "decisions", "open_tasks", "dates",
                  "device", "user")


def hit_columns(table: str, names: list[str]) -> list[str]:
    """The columns of `table` (whose schema has `names`) that make a hit."""
    wanted = EVENT_COLUMNS if table == "events" else MEMORY_COLUMNS
    return [c for c in wanted if c in names]


def hit(table: str, r: dict[str, Any], score: float) -> Hit:
    """The hit made of row `r` of `table` (timestamps read as UTC)."""
    ts = r["ts"]
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    device, user = str(r.get("device") or ""), str(r.get("user") or "")
    if table == "events":
        return Hit(id=r["id"], table=table, source=r["source"], kind=r["kind"], ts=ts,
                   title=r["title"] or r["subject"], text=r["text"], score=score,
                   device=device, user=user, subject=str(r.get("subject") or ""))
    end = r.get("ts_end")
    if end is not None and end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    return Hit(id=r["id"], table=table, source=r["source"], kind=f"memory.{r['level']}",
               ts=ts, title=r["title"], text=memory_text(r), score=score,
               event_ids=tuple(r["event_ids"] or ()), ts_end=end,
               project=r.get("project") or "", memory_ids=tuple(r.get("sources") or ()),
               device=device, user=user)
