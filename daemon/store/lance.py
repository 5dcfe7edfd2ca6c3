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
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import lancedb
import pyarrow as pa
from lancedb.index import FTS

from daemon.errors import PermanentError, RetryableError
from daemon.recall.hits import Hit
from daemon.store.schema import (
    MIGRATABLE,
    SCHEMA_VERSION,
    events_schema,
    memories_schema,
    migrate_table,
    with_primary_key,
)

log = logging.getLogger(__name__)
class StoreUnwritable(RetryableError):
    """The store's disk is full or read-only: nothing was committed; the events wait in
    the journal and are written when it can be written again."""


# How a full or read-only disk shows in LanceDB's (Rust) errors and in OSError.
_DISK_WORDS = ("no space left", "os error 28", "read-only file system", "os error 30",
               "disk quota", "os error 122")


def unwritable(exc: BaseException, location: str, what: str) -> StoreUnwritable | None:
    """A StoreUnwritable saying what to do when `exc` is a full or read-only disk."""
    text = str(exc).lower()
    if not any(w in text for w in _DISK_WORDS):
        return None
    why = "its disk is full" if ("space" in text or "28" in text or "quota" in text) \
        else "its file system is read-only"
    return StoreUnwritable(
        f"cannot write {what} to the store at {location}: {why}. Nothing was committed; "
        "memory stays searchable as it was, the events wait in the journal and are "
        "written when the store can be written again (free some space or make it writable)")


class Store:
    """LanceDB tables under `path`: a local folder, or an `s3://bucket/prefix` URI with
    its `storage_options` (see daemon/objectstore.py and `open_store`).

    `owner` is (device, user): rows written without their own device and user get these
    (an imported memory keeps the ones it came with)."""

    def __init__(self, path: Path | str, dims: int, embedder: str,
                 storage_options: dict[str, str] | None = None,
                 refresh_seconds: float | None = None,
                 owner: tuple[str, str] = ("", "")) -> None:
        self.remote = isinstance(path, str) and "://" in path
        self.location = str(path)
        self.device, self.user = owner
        if self.remote:
            # Several daemons may write here: reads look for their commits this often.
            self._db = lancedb.connect(
                str(path), storage_options=storage_options,
                read_consistency_interval=(None if refresh_seconds is None
                                           else timedelta(seconds=refresh_seconds)))
        else:
            Path(path).mkdir(parents=True, exist_ok=True)
            self._db = lancedb.connect(str(path))
        self._lock = threading.Lock()
        self._unindexed = {"events": 0, "memories": 0}
        self.events = self._open("events", events_schema(dims, embedder), embedder)
        self.memories = self._open("memories", memories_schema(dims, embedder), embedder)

    def _open(self, name: str, schema: pa.Schema, embedder: str) -> Any:
        if name in self._db.list_tables().tables:
            table = self._db.open_table(name)
            meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
            if meta.get("memoryd.schema_version") in MIGRATABLE:
                table = self._migrate(name, table, schema, meta.get("memoryd.schema_version"))
                meta = {k.decode(): v.decode()
                        for k, v in (table.schema.metadata or {}).items()}
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
        if self.remote:
            schema = with_primary_key(schema)
        table = self._db.create_table(name, schema=schema, exist_ok=True)
        try:
            table.create_index("doc", config=FTS(base_tokenizer="simple", stem=False,
                                                 remove_stop_words=False), replace=True)
        except (RuntimeError, OSError, ValueError) as exc:
            # Another process (or thread) made the same new table at the same moment and
            # its index commit won: the table is indexed, so use it.
            text = str(exc).lower()
            if "conflict" not in text and "preempted" not in text:
                raise
            log.info("the new %s table was indexed concurrently by another writer", name)
            table = self._db.open_table(name)
        return table

    def _migrate(self, name: str, table: Any, schema: pa.Schema, old: str | None) -> Any:
        """Rewrite an older table in the current schema (daemon/store/schema.py)."""
        if self.remote:  # keep (or gain) the primary key concurrent writers depend on
            schema = with_primary_key(schema)
        return migrate_table(self._db, name, table, schema, old,
                             lambda rows: self._legacy_owner(name, rows))

    def _legacy_owner(self, name: str, rows: int) -> dict[str, str]:
        """Who the rows of a pre-schema-3 table belong to. A local store was written by
        this daemon alone (and by its sync pulls, which the user could already read), so
        its rows get this daemon's device and user: its owner keeps seeing its history
        through owner-scoped tokens. A store on object storage may hold several daemons'
        rows, and stamping them with whoever migrates first would hand other people's
        memories to this user: they stay ownerless, visible only to unrestricted readers."""
        if not self.remote:
            return {"device": self.device, "user": self.user}
        if rows:
            log.warning("the %s table on %s predates owners: its %d rows get no device or "
                        "user, so only tokens for every owner read them", name,
                        self.location, rows)
        return {"device": "", "user": ""}

    # -- writing ---------------------------------------------------------------------

    def upsert_events(self, rows: list[dict[str, Any]]) -> None:
        self._upsert("events", self.events, rows)

    def upsert_memories(self, rows: list[dict[str, Any]]) -> None:
        self._upsert("memories", self.memories, rows)

    def _upsert(self, name: str, table: Any, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        for r in rows:  # stamped at write time: whoever writes owns what it wrote
            if not r.get("device"):
                r["device"] = self.device
            if not r.get("user"):
                r["user"] = self.user
        with self._lock:
            try:
                if self.remote:
                    self._upsert_remote(table, rows)
                else:
                    (table.merge_insert("id").when_matched_update_all()
                     .when_not_matched_insert_all().execute(rows))
                self._unindexed[name] += len(rows)
                if self._unindexed[name] >= 2000:
                    self._optimize(name, table)
            except (OSError, RuntimeError, ValueError) as exc:
                full = unwritable(exc, str(self.location), f"{len(rows)} {name} rows")
                if full is None:
                    raise
                raise full from exc

    def _upsert_remote(self, table: Any, rows: list[dict[str, Any]]) -> None:
        """Upsert on object storage, where other daemons commit too. Rows go in the
        table's own schema so Lance sees `id` as the primary key and records the inserted
        ids: two daemons inserting one new id at once then conflict and the loser retries
        as an update, instead of both appending it."""
        from daemon.store.objectstore import ObjectStoreUnavailable

        try:
            schema = table.schema  # a read: with refresh_seconds = 0 it asks the bucket
            data = pa.Table.from_pylist(
                [{f.name: r.get(f.name) for f in schema} for r in rows], schema=schema)
            (table.merge_insert("id").when_matched_update_all()
             .when_not_matched_insert_all().execute(data))
        except (OSError, RuntimeError) as exc:
            raise ObjectStoreUnavailable(
                f"writing {len(rows)} rows to the store at {self.location} failed: "
                f"{str(exc).splitlines()[0][:300]}. Nothing was committed; the write is "
                "retried when the object storage answers again") from exc

    def _optimize(self, name: str, table: Any) -> None:
        # New rows are searched by a flat scan until optimize folds them into the index.
        table.optimize()
        self._unindexed[name] = 0

    def optimize(self) -> None:
        with self._lock:
            self._optimize("events", self.events)
            self._optimize("memories", self.memories)

    # -- reading ---------------------------------------------------------------------

    def memory_rows(self, where: str, columns: list[str] | None = None) -> list[dict[str, Any]]:
        """Every `memories` row matching the SQL filter `where` (all of them, no ranking),
        with only `columns` when given; timestamps come back UTC-aware."""
        q = self.memories.search().where(where)
        if columns:
            q = q.select(columns)
        rows = q.limit(None).to_list()
        for r in rows:
            for key in ("ts", "ts_end", "created"):
                v = r.get(key)
                if v is not None and getattr(v, "tzinfo", 1) is None:
                    r[key] = v.replace(tzinfo=UTC)
        return rows

    def counts(self, where: str | None = None) -> dict[str, int]:
        """Rows in each table (matching `where`, e.g. an owners filter, when given)."""
        return {"events": self.events.count_rows(where),
                "memories": self.memories.count_rows(where)}

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
        device, user = str(r.get("device") or ""), str(r.get("user") or "")
        if table == "events":
            return Hit(id=r["id"], table=table, source=r["source"], kind=r["kind"], ts=ts,
                       title=r["title"] or r["subject"], text=r["text"], score=score,
                       device=device, user=user)
        end = r.get("ts_end")
        if end is not None and end.tzinfo is None:
            end = end.replace(tzinfo=UTC)
        return Hit(id=r["id"], table=table, source=r["source"], kind=f"memory.{r['level']}",
                   ts=ts, title=r["title"], text=memory_text(r), score=score,
                   event_ids=tuple(r["event_ids"] or ()), ts_end=end,
                   project=r.get("project") or "", memory_ids=tuple(r.get("sources") or ()),
                   device=device, user=user)

    # -- listing and forgetting (the read path) -------------------------------------

    def rows(self, table: str, where: str | None = None, limit: int | None = None,
             newest_first: bool = True) -> list[Hit]:
        """Return the rows of `table` matching `where` as hits (score 0), ordered by time.

        Only ids and times are scanned to order; full rows are read for the `limit` kept.
        """
        t = self.events if table == "events" else self.memories
        q = t.search().select(["id", "ts"])
        if where:
            q = q.where(where)
        keys = q.limit(None).to_arrow() if hasattr(q, "to_arrow") else None
        if keys is None or keys.num_rows == 0:
            return []
        pairs = sorted(zip(keys.column("ts").to_pylist(), keys.column("id").to_pylist(),
                           strict=True), reverse=newest_first)
        ids = [i for _, i in pairs[:limit] if i] if limit else [i for _, i in pairs]
        out: list[Hit] = []
        for n in range(0, len(ids), 500):
            part = ids[n:n + 500]
            quoted = ", ".join(sql_str(i) for i in part)
            found = t.search().where(f"id IN ({quoted})").limit(len(part)).to_list()
            out.extend(self._hit(table, r, 0.0) for r in found)
        out.sort(key=lambda h: (h.ts, h.id), reverse=newest_first)
        return out

    def ids(self, table: str, where: str) -> list[str]:
        t = self.events if table == "events" else self.memories
        return [str(i) for i in t.search().select(["id"]).where(where).limit(None)
                .to_arrow().column("id").to_pylist()]

    def memory_links(self) -> dict[str, tuple[list[str], list[str]]]:
        """Every memory's id with the event ids and memory ids (`sources`) it came from."""
        cols = [c for c in ("id", "event_ids", "sources") if c in self.memories.schema.names]
        data = self.memories.search().select(cols).limit(None).to_arrow()
        ids = data.column("id").to_pylist()
        evs = data.column("event_ids").to_pylist()
        srcs = data.column("sources").to_pylist() if "sources" in cols else [[]] * len(ids)
        return {i: (e or [], s or []) for i, e, s in zip(ids, evs, srcs, strict=True)}

    def delete(self, table: str, where: str) -> int:
        """Delete the rows of `table` matching `where`; return how many went."""
        t = self.events if table == "events" else self.memories
        with self._lock:
            n = int(t.count_rows(where))
            if n:
                try:
                    t.delete(where)
                except (OSError, RuntimeError, ValueError) as exc:
                    full = unwritable(exc, str(self.location), f"a deletion from {table}")
                    if full is None:
                        raise
                    raise full from exc
        return n

    def purge(self) -> None:
        """Fold deletions into the indexes and drop old versions from disk, so deleted
        rows cannot be read back from an earlier version of a table (forget means gone)."""
        import warnings
        from datetime import timedelta

        with self._lock, warnings.catch_warnings():
            # LanceDB warns that readers of older versions fail: here that is the point,
            # and this process is the store's only writer.
            warnings.filterwarnings("ignore", message=".*cleanup_older_than.*")
            for name, t in (("events", self.events), ("memories", self.memories)):
                # on object storage other daemons' uncommitted files look unverified
                t.optimize(cleanup_older_than=timedelta(0), delete_unverified=not self.remote)
                self._unindexed[name] = 0


def open_store(cfg: Any, dims: int, embedder: str) -> Store:
    """The store `cfg` names: `[store] uri` on object storage, else <data_dir>/store;
    it stamps what it writes with `[identity]` device and user."""
    from daemon.owners import identity

    owner = identity(cfg)
    if not cfg.store.uri:
        return Store(cfg.data_path / "store", dims, embedder, owner=owner)
    from daemon.store.objectstore import check_conditional_writes, store_settings

    s = store_settings(cfg.store)
    if cfg.store.check_conditional_writes:
        check_conditional_writes(s)
    return Store(s.uri, dims, embedder, storage_options=s.storage_options(),
                 refresh_seconds=cfg.store.refresh_seconds, owner=owner)


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


def sql_str(value: str) -> str:
    """Quote `value` as an SQL string literal for a LanceDB filter."""
    return "'" + value.replace("'", "''") + "'"


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
