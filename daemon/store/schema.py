"""The store's table schemas, their version, and the migration of older tables.

The schema version and the embedder live in the tables' schema metadata (daemon/store/
lance.py refuses a store made by another embedder or a newer memoryd). Only the worker
process imports this module (pyarrow).
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa

log = logging.getLogger(__name__)
# 2: memories gained project, sources and the structured fields (identifiers, entities,
# decisions, open_tasks, dates). An older store is migrated in place when opened.
# 3: events and memories gained device and user (who wrote them; daemon/owners.py).
# 4: event ids carry their owner, and so do day and week digest ids (store/owner_ids.py).
SCHEMA_VERSION = "4"
TS = pa.timestamp("us", tz="UTC")


LIST_FIELDS = ("identifiers", "entities", "decisions", "open_tasks", "dates")


def events_schema(dims: int, embedder: str) -> pa.Schema:
    return pa.schema(
        [
            ("id", pa.string()), ("ts", TS), ("source", pa.string()), ("kind", pa.string()),
            ("subject", pa.string()), ("title", pa.string()), ("text", pa.string()),
            ("attrs", pa.string()), ("doc", pa.string()),
            ("vector", pa.list_(pa.float32(), dims)),
            ("device", pa.string()), ("user", pa.string()),  # schema 3
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
            # schema 2: digests link to the memories they came from; structured fields
            ("project", pa.string()), ("sources", pa.list_(pa.string())),
            *((name, pa.list_(pa.string())) for name in LIST_FIELDS),
            ("device", pa.string()), ("user", pa.string()),  # schema 3
        ],
        metadata={"memoryd.schema_version": SCHEMA_VERSION, "memoryd.embedder": embedder},
    )


def with_primary_key(schema: pa.Schema) -> pa.Schema:
    """`schema` with `id` marked as Lance's (unenforced) primary key, which must be
    non-nullable; merge_insert then detects concurrent inserts of one id."""
    i = schema.get_field_index("id")
    f = schema.field(i)
    meta = dict(f.metadata or {})
    meta[b"lance-schema:unenforced-primary-key"] = b"true"
    return schema.set(i, pa.field("id", f.type, nullable=False, metadata=meta))


def memory_text(r: dict[str, Any]) -> str:
    """A memory's text: its summary, then the structured facts the summary does not
    already spell out (an identifier lost in the prose is still found and shown)."""
    text = r.get("text") or ""
    lines = [text]
    low = text.lower()
    for name, label in (("identifiers", "Identifiers"), ("decisions", "Decisions"),
                        ("open_tasks", "Open tasks"), ("dates", "Dates")):
        values = [v for v in (r.get(name) or ()) if v and v.lower() not in low]
        if values:
            lines.append(f"{label}: " + "; ".join(values))
    return "\n".join(lines)
