"""Schema migrations of the store's tables, run by one daemon at a time.

An older table (schema 1 or 2) is rewritten in the current schema when a store is
opened: columns it lacks get empty values, nothing it holds is dropped. On a shared
bucket several daemons may open it at once: one takes the migration lease
(daemon/store/tables.py, `MigrationLock`) and migrates, the others wait and open the
migrated table; the rewrite itself is retried on commit conflicts (daemon/store/retry.py).
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa

from daemon.store import owner_ids
from daemon.store.lancedb_lean import lancedb
from daemon.store.retry import retrying
from daemon.store.tables import schema_version

log = logging.getLogger(__name__)
MIGRATABLE = ("1", "2", "3")  # older schema versions this memoryd rewrites to the current one
BEFORE_OWNER_IDS = ("1", "2", "3")  # ids without their owner (daemon/store/owner_ids.py)
OWNER_FIELDS = ("device", "user")


def migrate_once(store: Any, name: str, table: Any, schema: pa.Schema) -> Any:
    """Migrate `name` in one daemon only: the others (started at the same instant on
    one bucket) wait for its lease and open the table it migrated."""
    if (table.schema.metadata or {}).get(b"memoryd.embedder") != \
            (schema.metadata or {}).get(b"memoryd.embedder"):
        return table  # refused by the caller with the embedder message

    def done() -> bool:
        return bool(schema_version(store._db.open_table(name)) not in MIGRATABLE)

    with store._migration.held(name, done) as mine:
        table = store._db.open_table(name)
        if mine and schema_version(table) in MIGRATABLE:
            old = schema_version(table)
            table = retrying("schema migration",
                             lambda: _migrate(store, name, schema, old),
                             where=store.location)
    return store._db.open_table(name)

def _migrate(store: Any, name: str, schema: pa.Schema, old: str | None) -> Any:
    """Rewrite an older table in `schema`: columns it lacks get empty values, nothing
    it holds is dropped. LanceDB keeps the previous version on disk until cleanup,
    and the journal holds every event, so an interrupted migration loses nothing."""
    new = (schema.metadata or {}).get(b"memoryd.schema_version", b"").decode()
    data = store._db.open_table(name).to_arrow()
    log.warning("migrating the store's %s table (%d rows) from schema version %s to %s",
                name, data.num_rows, old, new)
    owner = _legacy_owner(store, name, data.num_rows)
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
    if old in BEFORE_OWNER_IDS:
        migrated = owner_ids.remap(name, migrated)
    table = store._db.create_table(name, data=migrated, schema=schema, mode="overwrite")
    table.create_index("doc", config=lancedb.index.FTS(base_tokenizer="simple", stem=False,
                                         remove_stop_words=False), replace=True)
    log.warning("migrated the store's %s table: %d rows kept", name, table.count_rows())
    return table

def _legacy_owner(store: Any, name: str, rows: int) -> dict[str, str]:
    """Who the rows of a pre-schema-3 table belong to. A local store was written by
    this daemon alone (and by its sync pulls, which the user could already read), so
    its rows get this daemon's device and user: its owner keeps seeing its history
    through owner-scoped tokens. A store on object storage may hold several daemons'
    rows, and stamping them with whoever migrates first would hand other people's
    memories to this user: they stay ownerless, visible only to unrestricted readers."""
    if not store.remote:
        return {"device": store.device, "user": store.user}
    if rows:
        log.warning("the %s table on %s predates owners: its %d rows get no device or "
                    "user, so only tokens for every owner read them", name,
                    store.location, rows)
    return {"device": "", "user": ""}
