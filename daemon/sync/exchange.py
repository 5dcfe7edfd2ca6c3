"""Export and import of the `memories` table, in the worker (it imports pyarrow).

Every column the table has travels, vectors included, so a peer with the same embedder
needs no re-embedding; columns one side lacks are filled with nulls or dropped, so two
memoryd versions with different schemas still merge. The ids this machine forgot travel
with it (ids only). Import checks the whole snapshot first (inbound.py: sizes, owners),
then applies the publisher's tombstones, then merges by id: new ids are inserted, an
existing id is replaced only by a newer copy (`created`); nothing else local is deleted.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from daemon.errors import PermanentError
from daemon.sync.guard import Admission
from daemon.sync.inbound import apply_tombstones, judge, read_segment

log = logging.getLogger(__name__)


def _meta(schema: pa.Schema) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return str(value)


def _parquet(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return bytes(sink.getvalue().to_pybytes())


def _canonical(table: pa.Table) -> bytes:
    """Parquet bytes that depend only on the rows, so an unchanged day keeps its name:
    the schema metadata's key order varies between opens of the same table."""
    meta = dict(sorted((table.schema.metadata or {}).items()))  # its order varies too
    return _parquet(table.replace_schema_metadata(meta))


def export_memories(store: Any, context_rows: int = 30,
                    forgotten: tuple[frozenset[str], frozenset[str]] = (frozenset(),
                                                                        frozenset()),
                    ) -> dict[str, Any]:
    """Given a Store, return the `memories` table as Parquet segments, one per UTC day of
    `ts` (rows sorted by id, so an unchanged day gives the same bytes and is not sent
    again), with counts, time range, embedder, the newest rows (for context.md) and the
    `forgotten` (event ids, memory ids) this machine keeps tombstones of."""
    try:  # another process (an `ingest --once`, a test) may have written since we opened it
        store.memories.checkout_latest()
    except Exception as exc:
        log.debug("checkout_latest: %s", exc)
    table: pa.Table = store.memories.to_arrow()
    segments = []
    if table.num_rows:
        days = pc.fill_null(pc.strftime(table["ts"], format="%Y-%m-%d"), "undated")
        for day in sorted(pc.unique(days).to_pylist()):
            rows = table.filter(pc.equal(days, day))
            # one chunk, sorted: the same rows always give the same bytes (chunk
            # boundaries, which vary with the store's fragments, would change them)
            rows = rows.take(pc.sort_indices(rows, sort_keys=[("id", "ascending")]))
            rows = rows.combine_chunks()
            segments.append({"key": day, "rows": rows.num_rows, "data": _canonical(rows)})
    levels: dict[str, int] = {}
    if table.num_rows:
        for item in pc.value_counts(table["level"]).to_pylist():
            levels[str(item["values"])] = int(item["counts"])
    ts_min = ts_max = None
    if table.num_rows:
        ts_min = _iso(pc.min(table["ts"]).as_py())
        end = table["ts_end"] if "ts_end" in table.column_names else table["ts"]
        ts_max = _iso(pc.max(end).as_py())
    recent: list[dict[str, Any]] = []
    if table.num_rows and context_rows > 0:
        # The newest digests (day, week) first, then the newest memories of any level.
        wanted = [c for c in ("id", "ts", "level", "title", "text", "open_tasks")
                  if c in table.column_names]
        slim = table.select(wanted)
        digests = slim.filter(pc.is_in(slim["level"], pa.array(["day", "week"])))
        seen: set[str] = set()
        for part, n in ((digests, context_rows // 2), (slim, context_rows)):
            order = pc.array_sort_indices(part["ts"], order="descending")
            for r in part.take(order[:n]).to_pylist():
                if r["id"] not in seen and len(recent) < context_rows:
                    seen.add(r["id"])
                    r["ts"] = _iso(r.get("ts"))
                    recent.append(r)
    vec = table.schema.field("vector").type
    return {
        "segments": segments, "rows": table.num_rows, "levels": levels,
        "ts_min": ts_min, "ts_max": ts_max, "columns": table.column_names,
        "embedder": _meta(table.schema).get("memoryd.embedder", ""),
        "dims": getattr(vec, "list_size", 0), "recent": recent,
        "forgotten": {"events": sorted(forgotten[0]), "memories": sorted(forgotten[1])},
    }


def _without_forgotten(table: pa.Table, events: frozenset[str],
                       memories: frozenset[str]) -> pa.Table:
    if not (events or memories) or table.num_rows == 0:
        return table
    cols = table.column_names

    def values(name: str) -> list[Any]:
        return table[name].to_pylist() if name in cols else [None] * table.num_rows

    keep = [not (mid in memories or events.intersection(evs or ())
                 or memories.intersection(srcs or ()))
            for mid, evs, srcs in zip(values("id"), values("event_ids"), values("sources"),
                                      strict=True)]
    if not all(keep):
        log.info("left out %d memories of the snapshot that were forgotten here",
                 keep.count(False))
    return table.filter(pa.array(keep, type=pa.bool_()))


def import_memories(store: Any, segments: list[bytes],
                    forgotten: tuple[frozenset[str], frozenset[str]] = (frozenset(),
                                                                        frozenset()),
                    adm: Admission | None = None) -> dict[str, Any]:
    """Check a snapshot's Parquet segments whole (sizes and owners, by `adm`), apply its
    publisher's tombstones, then merge its rows into the Store by id; return counts and
    the tombstones to keep. `forgotten` holds the (event ids, memory ids) the user made
    this machine forget: a memory that is one of them, or stands on one, is not brought
    back. Raise Refused (nothing changed) for a snapshot the admission refuses, and
    PermanentError if it was embedded by another model or with other dims."""
    adm = adm or Admission("", "", frozenset(), frozenset(), 0, 0)
    tables = [read_segment(b, adm, n) for n, b in enumerate(segments)]
    skipped_ours = 0
    rows = None
    if tables:
        incoming = _without_forgotten(pa.concat_tables(tables, promote_options="default"),
                                      forgotten[0] | frozenset(adm.forgotten_events),
                                      forgotten[1] | frozenset(adm.forgotten_memories))
        if adm.own:
            incoming, skipped_ours = judge(store, _stamp(incoming, adm.publisher), adm)
        rows, dropped = _fit(store, incoming)
    tombs = apply_tombstones(store, adm)
    out: dict[str, Any] = {"received": 0, "inserted": 0, "ours": skipped_ours,
                           "tombstones": {k: tombs[k] for k in ("events", "memories")},
                           "forgot": len(tombs["deleted"])}
    if rows is None or rows.num_rows == 0:
        return {**out, "total": store.memories.count_rows()}
    local = store.memories.schema
    with store._lock:  # the Store's writer lock: one merge at a time with the pipeline
        before = store.memories.count_rows()
        merge = store.memories.merge_insert("id")
        if "created" in local.names:
            merge = merge.when_matched_update_all(where="target.created < source.created")
        merge.when_not_matched_insert_all().execute(rows)
        after = store.memories.count_rows()
        store._unindexed["memories"] += rows.num_rows
    return {**out, "received": rows.num_rows, "inserted": after - before, "total": after,
            "dropped_columns": dropped}


def _stamp(table: pa.Table, publisher: str) -> pa.Table:
    """Rows without an owner are their publisher's: give them its user and device."""
    if "@" not in publisher:
        return table
    user, device = publisher.split("@", 1)
    for name, value in (("user", user), ("device", device)):
        if name in table.column_names:
            col = pc.fill_null(table[name], "")
            fixed = pc.if_else(pc.equal(col, ""), value, col)
            table = table.set_column(table.column_names.index(name), name, fixed)
    return table


def _fit(store: Any, incoming: pa.Table) -> tuple[pa.Table, list[str]]:
    """`incoming` in the store's schema (missing columns filled as the store's own
    migration fills them); raise PermanentError when it cannot fit."""
    local = store.memories.schema
    theirs = _meta(incoming.schema).get("memoryd.embedder")
    ours = _meta(local).get("memoryd.embedder")
    if theirs != ours and incoming.num_rows:
        raise PermanentError(f"the snapshot was embedded with {theirs!r}, this store with "
                             f"{ours!r}; set the same [models] embedder on both machines")
    columns = []
    for field in local:
        if field.name in incoming.column_names:
            try:
                columns.append(incoming[field.name].cast(field.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise PermanentError(f"the snapshot's {field.name} column does not fit this "
                                     f"store ({exc}); is the embedder the same size?") from exc
        elif pa.types.is_list(field.type):
            columns.append(pa.array([[] for _ in range(incoming.num_rows)], type=field.type))
        elif pa.types.is_string(field.type):
            columns.append(pa.array([""] * incoming.num_rows, type=field.type))
        else:
            columns.append(pa.nulls(incoming.num_rows, field.type))
    dropped = sorted(set(incoming.column_names) - set(local.names))
    if dropped:
        log.info("snapshot columns this store does not have, left out: %s", ", ".join(dropped))
    return pa.Table.from_arrays(columns, schema=local), dropped
