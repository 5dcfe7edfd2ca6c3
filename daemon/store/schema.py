"""The store's table schemas, their version, and the migration of older tables.

The schema version and the embedder live in the tables' schema metadata (daemon/store/
lance.py refuses a store made by another embedder or a newer memoryd). Only the worker
process imports this module (pyarrow).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pyarrow as pa
from lancedb.index import FTS

log = logging.getLogger(__name__)
MIGRATABLE = ("1", "2")  # older schema versions `Store` rewrites to the current one
# 2: memories gained project, sources and the structured fields (identifiers, entities,
# decisions, open_tasks, dates). An older store is migrated in place when opened.
# 3: events and memories gained device and user (who wrote them; daemon/owners.py).
SCHEMA_VERSION = "3"
OWNER_FIELDS = ("device", "user")
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


def migrate_table(db: Any, name: str, table: Any, schema: pa.Schema, old: str | None,
                  owner_of: Callable[[int], dict[str, str]]) -> Any:
    """Rewrite an older table in `schema`: columns it lacks get empty values (the owner
    columns get `owner_of(rows)`), nothing it holds is dropped. LanceDB keeps the previous
    version on disk until cleanup, and the journal holds every event, so an interrupted
    migration loses nothing. A table of another embedder is returned as it is (the
    caller refuses it with the embedder message)."""
    if (table.schema.metadata or {}).get(b"memoryd.embedder") != \
            (schema.metadata or {}).get(b"memoryd.embedder"):
        return table
    data = table.to_arrow()
    log.warning("migrating the store's %s table (%d rows) from schema version %s to %s",
                name, data.num_rows, old, SCHEMA_VERSION)
    owner = owner_of(data.num_rows)
    columns = []
    for f in schema:
        if f.name in data.column_names:
            columns.append(data.column(f.name).cast(f.type))
        elif f.name in OWNER_FIELDS:
            columns.append(pa.array([owner[f.name]] * data.num_rows, type=f.type))
        elif pa.types.is_list(f.type) or pa.types.is_fixed_size_list(f.type):
            columns.append(pa.array([[] for _ in range(data.num_rows)], type=f.type))
        else:
            columns.append(pa.array([""] * data.num_rows, type=f.type))
    migrated = pa.Table.from_arrays(columns, schema=schema)
    table = db.create_table(name, data=migrated, schema=schema, mode="overwrite")
    table.create_index("doc", config=FTS(base_tokenizer="simple", stem=False,
                                         remove_stop_words=False), replace=True)
    log.warning("migrated the store's %s table: %d rows kept", name, table.count_rows())
    return table
