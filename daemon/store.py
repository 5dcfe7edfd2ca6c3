"""The memory store on LanceDB: `events` and `memories`, each with a vector column and a
full-text index over a `doc` column (title, subject and text together).

Writes are upserts keyed by id (`merge_insert`), so replaying a batch after a crash
changes nothing. The schema version and the embedder live in the tables' schema
metadata; opening a store made by another embedder is refused with what to do.
Only the worker process imports this module: LanceDB and pyarrow cost ~170 MB of RSS.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC
from pathlib import Path
from typing import Any

import lancedb
import pyarrow as pa
from lancedb.index import FTS

from daemon.errors import PermanentError
from daemon.hits import Hit

log = logging.getLogger(__name__)
SCHEMA_VERSION = "1"
TS = pa.timestamp("us", tz="UTC")


def events_schema(dims: int, embedder: str) -> pa.Schema:
    return pa.schema(
        [
            ("id", pa.string()), ("ts", TS), ("source", pa.string()), ("kind", pa.string()),
            ("subject", pa.string()), ("title", pa.string()), ("text", pa.string()),
            ("attrs", pa.string()), ("doc", pa.string()),
            ("vector", pa.list_(pa.float32(), dims)),
        ],
        metadata={"memoryd.schema_version": SCHEMA_VERSION, "memoryd.embedder": embedder},
    )


def memories_schema(dims: int, embedder: str) -> pa.Schema:
    return pa.schema(
        [
            ("id", pa.string()), ("ts", TS), ("ts_end", TS), ("level", pa.string()),
            ("source", pa.string()), ("title", pa.string()), ("text", pa.string()),
            ("event_ids", pa.list_(pa.string())), ("model", pa.string()),
            ("created", TS), ("doc", pa.string()),
            ("vector", pa.list_(pa.float32(), dims)),
        ],
        metadata={"memoryd.schema_version": SCHEMA_VERSION, "memoryd.embedder": embedder},
    )


class Store:
    """LanceDB tables under `path` (a folder; `s3://` later)."""

    def __init__(self, path: Path, dims: int, embedder: str) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self._db = lancedb.connect(str(path))
        self._lock = threading.Lock()
        self._unindexed = {"events": 0, "memories": 0}
        self.events = self._open("events", events_schema(dims, embedder), embedder)
        self.memories = self._open("memories", memories_schema(dims, embedder), embedder)

    def _open(self, name: str, schema: pa.Schema, embedder: str) -> Any:
        if name in self._db.list_tables().tables:
            table = self._db.open_table(name)
            meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
            if meta.get("memoryd.schema_version") != SCHEMA_VERSION:
                raise PermanentError(
                    f"the store's {name} table has schema version "
                    f"{meta.get('memoryd.schema_version')}, this memoryd reads "
                    f"{SCHEMA_VERSION}; upgrade memoryd or move the store folder aside")
            if meta.get("memoryd.embedder") != embedder:
                raise PermanentError(
                    f"the store was embedded with {meta.get('memoryd.embedder')!r}, the config "
                    f"asks for {embedder!r}; set [models] embedder back, or move the store "
                    "folder aside to re-embed from the journal")
            return table
        table = self._db.create_table(name, schema=schema, exist_ok=True)
        table.create_index("doc", config=FTS(base_tokenizer="simple", stem=False,
                                             remove_stop_words=False), replace=True)
        return table

    # -- writing ---------------------------------------------------------------------

    def upsert_events(self, rows: list[dict[str, Any]]) -> None:
        self._upsert("events", self.events, rows)

    def upsert_memories(self, rows: list[dict[str, Any]]) -> None:
        self._upsert("memories", self.memories, rows)

    def _upsert(self, name: str, table: Any, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        with self._lock:
            (table.merge_insert("id").when_matched_update_all()
             .when_not_matched_insert_all().execute(rows))
            self._unindexed[name] += len(rows)
            if self._unindexed[name] >= 2000:
                self._optimize(name, table)

    def _optimize(self, name: str, table: Any) -> None:
        # New rows are searched by a flat scan until optimize folds them into the index.
        table.optimize()
        self._unindexed[name] = 0

    def optimize(self) -> None:
        with self._lock:
            self._optimize("events", self.events)
            self._optimize("memories", self.memories)

    # -- reading ---------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        return {"events": self.events.count_rows(), "memories": self.memories.count_rows()}

    def vector_search(self, table: str, vector: list[float], k: int,
                      where: str | None = None) -> list[Hit]:
        t = self.events if table == "events" else self.memories
        q = t.search(vector, vector_column_name="vector").distance_type("cosine").limit(k)
        if where:
            q = q.where(where, prefilter=True)
        return [self._hit(table, r, 1.0 - float(r["_distance"])) for r in q.to_list()]

    def text_search(self, table: str, text: str, k: int, where: str | None = None) -> list[Hit]:
        t = self.events if table == "events" else self.memories
        q = t.search(text, query_type="fts", fts_columns="doc").limit(k)
        if where:
            q = q.where(where, prefilter=True)
        return [self._hit(table, r, float(r["_score"])) for r in q.to_list()]

    @staticmethod
    def _hit(table: str, r: dict[str, Any], score: float) -> Hit:
        ts = r["ts"]
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        if table == "events":
            return Hit(id=r["id"], table=table, source=r["source"], kind=r["kind"], ts=ts,
                       title=r["title"] or r["subject"], text=r["text"], score=score)
        return Hit(id=r["id"], table=table, source=r["source"], kind=f"memory.{r['level']}",
                   ts=ts, title=r["title"], text=r["text"], score=score,
                   event_ids=tuple(r["event_ids"] or ()))


def event_row(ev: Any, vector: list[float]) -> dict[str, Any]:
    """Given a collectors.base.Event and its embedding, return an `events` row."""
    return {
        "id": ev.id, "ts": ev.ts, "source": ev.source, "kind": ev.kind,
        "subject": ev.subject, "title": ev.title, "text": ev.text,
        "attrs": json.dumps(ev.attrs, sort_keys=True, default=str),
        "doc": event_doc(ev), "vector": vector,
    }


def event_doc(ev: Any) -> str:
    """The text an event is found by: its title, subject and content."""
    return "\n".join(p for p in (ev.title, ev.subject, ev.text) if p)
