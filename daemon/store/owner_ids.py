"""Schema 4: event ids carry their owner, and so do day and week digest ids.

Before it, an event id hashed source, subject and time only: two devices that touched one
path in the same second shared a row in a shared store, and the later owner won; a local
store's digests (`day-2026-11-30`) had no owner, so a peer's pulled digest could replace
ours. A table of an older schema is rewritten here with the function the journal uses
for its own rows (daemon/owners.py `owned_id`, daemon/intake/journal.py `_adopt`), so the
journal and the store keep agreeing on every id. Rows without an owner (a shared bucket's
rows from before owners) keep their ids."""

from __future__ import annotations

import pyarrow as pa

from daemon.owners import owned_id, owner_key

DIGEST_LEVELS = ("day", "week")


def remap(name: str, data: pa.Table) -> pa.Table:
    """`data` (a table of the current schema holding rows written before schema 4) with
    owner-carrying ids: the events' ids, the memories' `event_ids`, the digests' ids and
    the `sources` that name those digests. Nothing else changes."""
    owners = [owner_key(d or "", u or "") for d, u in
              zip(data.column("device").to_pylist(), data.column("user").to_pylist(),
                  strict=True)]
    ids = data.column("id").to_pylist()
    if name == "events":
        new_ids = [owned_id(o, i) for o, i in zip(owners, ids, strict=True)]
        return _set(data, "id", pa.array(new_ids, type=pa.string()))
    levels = data.column("level").to_pylist()
    renamed: dict[str, str] = {}
    new_ids = []
    for i, level, owner in zip(ids, levels, owners, strict=True):
        if level in DIGEST_LEVELS and owner and "~" not in i:
            renamed[i] = f"{i}~{owner}"
        new_ids.append(renamed.get(i, i))
    event_ids = [[owned_id(o, e) for e in (evs or ())] for o, evs in
                 zip(owners, data.column("event_ids").to_pylist(), strict=True)]
    sources = [[renamed.get(s, s) for s in (src or ())]
               for src in data.column("sources").to_pylist()]
    data = _set(data, "id", pa.array(new_ids, type=pa.string()))
    data = _set(data, "event_ids", pa.array(event_ids, type=data.schema.field("event_ids").type))
    return _set(data, "sources", pa.array(sources, type=data.schema.field("sources").type))


def _set(data: pa.Table, column: str, values: pa.Array) -> pa.Table:
    i = data.schema.get_field_index(column)
    return data.set_column(i, data.schema.field(i), values)
