"""An inbound snapshot, checked whole before any row of it is merged (worker side: it
imports pyarrow).

Each segment's decompressed size is bounded twice: by what its Parquet footer declares
(checked before a byte is decompressed) and by what its rows hold once expanded, computed
from the compact, dictionary-encoded read before any value is expanded; every row is
bounded too. Every row's owner (user@device) is then
judged by the guard's `Admission`: one row of an owner the target may not bring refuses
the whole snapshot. Only then are the publisher's tombstones applied, by `apply_tombstones`.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from daemon.store.filters import id_filters
from daemon.sync.guard import Admission, Refused, verdict

log = logging.getLogger(__name__)


def read_segment(data: bytes, adm: Admission, n: int) -> pa.Table:
    """The rows of one Parquet segment; raise Refused if it decompresses (or says it
    would) to more than the cap, or one of its rows is larger than the row cap.

    Strings are read dictionary-encoded, as compact as they were stored (a value
    repeated a million times is held once), and every row's size is computed from that
    before a single value is expanded: a small file built to expand into gigabytes is
    refused at the size it was sent."""
    cap = adm.max_segment_bytes
    try:
        plain = pq.ParquetFile(pa.BufferReader(data))
        md = plain.metadata
        declared = sum(md.row_group(i).total_byte_size for i in range(md.num_row_groups))
        if cap and declared > cap:
            raise Refused(f"segment {n} ({len(data)} bytes) would decompress to {declared} "
                          f"bytes, more than [sync] max_segment_bytes ({cap}); nothing was "
                          "merged")
        strings = [md.schema.column(i).path for i in range(md.num_columns)
                   if md.schema.column(i).physical_type == "BYTE_ARRAY"]
        compact = pq.ParquetFile(pa.BufferReader(data), read_dictionary=strings)
        tables, total = [], 0
        for i in range(md.num_row_groups):
            t = compact.read_row_group(i)
            sizes = row_bytes(t)
            total += int(sizes.sum())
            if cap and total > cap:
                raise Refused(f"segment {n} ({len(data)} bytes) decompresses to more than "
                              f"[sync] max_segment_bytes ({cap}); nothing was merged")
            if adm.max_row_bytes and t.num_rows and int(sizes.max()) > adm.max_row_bytes:
                raise Refused(f"segment {n}: a row holds {int(sizes.max())} bytes, more than "
                              f"[sync] max_row_bytes ({adm.max_row_bytes}); nothing was merged")
            tables.append(t.cast(plain.schema_arrow))
    except (pa.ArrowException, OSError) as exc:
        raise Refused(f"segment {n} is not readable Parquet ({exc}); nothing was merged") from exc
    return pa.concat_tables(tables) if tables else plain.schema_arrow.empty_table()


def row_bytes(table: pa.Table) -> np.ndarray[Any, Any]:
    """Each row's size in bytes once expanded: its strings (dictionary-encoded ones
    counted as their values), lists and fixed-width values."""
    sizes = np.zeros(table.num_rows, dtype=np.int64)
    for col in table.columns:
        sizes += _column_bytes(col.combine_chunks(), table.num_rows)
    return sizes


def _column_bytes(arr: pa.Array, rows: int) -> np.ndarray[Any, Any]:
    t = arr.type
    if pa.types.is_dictionary(t):
        lens = _column_bytes(arr.dictionary, len(arr.dictionary))
        idx = pc.fill_null(arr.indices, 0).to_numpy(zero_copy_only=False).astype(np.int64)
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
        return np.where(valid, lens[idx] if len(lens) else 0, 0).astype(np.int64)
    if pa.types.is_string(t) or pa.types.is_binary(t) or pa.types.is_large_string(t) \
            or pa.types.is_large_binary(t):
        return pc.fill_null(pc.binary_length(arr), 0).to_numpy(
            zero_copy_only=False).astype(np.int64)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        values = pc.list_flatten(arr)
        if len(values) == 0:
            return np.zeros(rows, dtype=np.int64)
        parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)
        inner = _column_bytes(values, len(values))
        return np.bincount(parents, weights=inner, minlength=rows).astype(np.int64)
    width = getattr(t, "bit_width", 64) // 8
    return np.full(rows, max(width, 1), dtype=np.int64)


def owners_of(table: pa.Table, publisher: str) -> list[str]:
    """Each row's owner as user@device; a row without one is the publisher's."""
    cols = table.column_names
    users = table["user"].to_pylist() if "user" in cols else [""] * table.num_rows
    devices = table["device"].to_pylist() if "device" in cols else [""] * table.num_rows
    return [f"{u}@{d}" if u and d else publisher for u, d in zip(users, devices, strict=True)]


def judge(store: Any, table: pa.Table, adm: Admission) -> tuple[pa.Table, int]:
    """The rows to merge and how many were this daemon's own, already held (skipped).
    Raise Refused, counting the rows and naming their owners, if any owner is not allowed."""
    owners = owners_of(table, adm.publisher)
    ids = [str(i) for i in table["id"].to_pylist()]
    mine = [i for i, o in zip(ids, owners, strict=True) if o == adm.own]
    held = _held(store, mine) if mine else set()
    verdicts = [verdict(o, adm, i in held) for i, o in zip(ids, owners, strict=True)]
    refused = Counter(o for o, v in zip(owners, verdicts, strict=True) if v == "refuse")
    if refused:
        n = sum(refused.values())
        who = ", ".join(f"{o} ({c})" for o, c in refused.most_common(5))
        allowed = ", ".join(sorted(adm.allowed)) or "nobody"
        raise RefusedRows(
            f"{n} rows claim owners this target may not bring: {who}; it may bring {allowed}. "
            "The snapshot was refused whole, nothing was merged; if they are right, list "
            "them in the target's owners = [...]", n)
    keep = [v == "accept" for v in verdicts]
    return table.filter(pa.array(keep, type=pa.bool_())), verdicts.count("ours")


class RefusedRows(Refused):
    """Refused for rows of owners not allowed; `rows` counts them."""

    def __init__(self, message: str, rows: int = 0) -> None:
        super().__init__(message)
        self.rows = rows

    def __reduce__(self) -> Any:  # crosses the worker's pipe with its count
        return (RefusedRows, (str(self), self.rows))


def _held(store: Any, ids: list[str]) -> set[str]:
    out: set[str] = set()
    for _, where in id_filters(ids):
        out.update(store.ids("memories", where))
    return out


def apply_tombstones(store: Any, adm: Admission) -> dict[str, list[str]]:
    """Delete the rows the publisher forgot, of the owners its tombstones may delete,
    and the memories standing on them (digests built on a forgotten memory go too);
    purge old versions so they are gone from disk. Return the tombstones to keep here:
    those applied and those for rows not held; ids held for other owners are left."""
    t_events, t_mems = set(adm.forgotten_events), set(adm.forgotten_memories)
    if not (t_events or t_mems):
        return {"events": [], "memories": [], "deleted": []}
    cols = [c for c in ("id", "event_ids", "sources", "user", "device")
            if c in store.memories.schema.names]
    data = store.memories.search().select(cols).limit(None).to_arrow()
    rows = data.to_pylist()
    trusted = adm.tombstone_owners
    doomed: set[str] = set()
    kept_ids: set[str] = set()
    for r in rows:
        hit = r["id"] in t_mems or t_events.intersection(r.get("event_ids") or ())
        if hit:
            owner = f"{r.get('user') or ''}@{r.get('device') or ''}"
            (doomed if owner in trusted else kept_ids).add(r["id"])
    changed = True
    while changed:  # digests standing on what goes, transitively
        changed = False
        for r in rows:
            if r["id"] not in doomed and doomed.intersection(r.get("sources") or ()):
                doomed.add(r["id"])
                changed = True
    ev_hits = []
    for _, where in id_filters(sorted(t_events)):
        ev_rows = store.events.search().select(["id", "user", "device"]).where(
            where).limit(None)
        for r in ev_rows.to_arrow().to_pylist():
            if f"{r.get('user') or ''}@{r.get('device') or ''}" in trusted:
                ev_hits.append(r["id"])
            else:
                kept_ids.add(r["id"])
    for table, ids in (("memories", sorted(doomed)), ("events", ev_hits)):
        for _, where in id_filters(ids):
            store.delete(table, where)
    if doomed or ev_hits:
        store.purge()
        log.info("applied a peer's tombstones: %d memories and %d events deleted",
                 len(doomed), len(ev_hits))
    if kept_ids:
        log.info("left %d rows a peer forgot: they belong to owners it may not forget",
                 len(kept_ids))
    return {"events": sorted(t_events - kept_ids),
            "memories": sorted((t_mems | doomed) - kept_ids), "deleted": sorted(doomed)}
