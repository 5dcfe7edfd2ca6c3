"""The memory store on LanceDB: `events` and `memories`, each with a vector column and a
full-text index over a `doc` column (title, subject and text together).

Writes are upserts keyed by id (`merge_insert`), so replaying a batch after a crash
changes nothing. The schema version and the embedder live in the tables' schema
metadata; opening a store made by another embedder is refused with what to do.
Only the worker process imports this module: LanceDB and pyarrow cost ~170 MB of RSS.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from datetime import UTC, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa

from daemon.errors import PermanentError, RetryableError
from daemon.recall.hits import Hit
from daemon.store import ann, searches
from daemon.store.filters import id_filters
from daemon.store.hitrows import hit, hit_columns
from daemon.store.lancedb_lean import lancedb
from daemon.store.migrate import MIGRATABLE, migrate_once
from daemon.store.objectstore import settings_from_options
from daemon.store.retry import count, is_conflict, retrying
from daemon.store.schema import SCHEMA_VERSION, events_schema, memories_schema, with_primary_key
from daemon.store.tables import (
    MigrationLock,
    create_or_open,
    dedupe,
    ensure_fts,
    refuse_newer,
    schema_meta,
    schema_version,
)

log = logging.getLogger(__name__)
REMOTE_CLEANUP_GRACE = 300.0  # seconds of table versions kept on a shared store


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
    full = any(w in text for w in ("no space", "os error 28", "errno 28", "quota"))
    why = "its disk is full" if full else "its file system is read-only"
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
                 owner: tuple[str, str] = ("", ""), optimize_rows: int = 2000,
                 cleanup_grace: float = -1.0, ann_min_rows: int = 10_000,
                 cache_mb: int = 0) -> None:
        self.remote = isinstance(path, str) and "://" in path
        self.location = str(path)
        self.device, self.user = owner
        self.cache = _session(cache_mb)  # LanceDB's caches (None: its defaults)
        if not self.remote:
            Path(path).mkdir(parents=True, exist_ok=True)
        # Reads ask for other processes' commits (several daemons on a bucket, the worker
        # when this is the reader) this often; None: never on their own (see commits.py).
        fresh = None if refresh_seconds is None else timedelta(seconds=refresh_seconds)
        self._db = lancedb.connect(str(path), storage_options=storage_options,
                                   session=self.cache, read_consistency_interval=fresh)
        self._migration = MigrationLock(self.location, settings_from_options(
            self.location, storage_options or {}) if self.remote else None)
        self.optimize_rows, self.ann_min_rows = optimize_rows, ann_min_rows  # store/ann.py
        # Cleanup keeps table versions younger than this: a writer in another process
        # checks its commit against the versions since it read, and if cleanup removed
        # them under it, Lance can let two inserts of one id both land. One daemon alone
        # on a local store can clean at once (forget is then gone from disk at once).
        self.cleanup_grace = (cleanup_grace if cleanup_grace >= 0
                              else REMOTE_CLEANUP_GRACE if self.remote else 0.0)
        self._lock = threading.Lock()
        self._unindexed = {"events": 0, "memories": 0}
        self.events = self._open("events", events_schema(dims, embedder), embedder)
        self.memories = self._open("memories", memories_schema(dims, embedder), embedder)
        # each table's columns, and those a search reads (a migration, the only thing
        # adding any, reopens the store)
        self._columns = {name: set(t.schema.names) for name, t in (("events", self.events),
                                                                  ("memories", self.memories))}
        self._hit_columns = {name: hit_columns(name, list(c)) for name, c in self._columns.items()}

    def columns(self, table: str) -> set[str]:
        """The column names of `table` as opened (no read: a search asks for them)."""
        return self._columns[table]

    def _open(self, name: str, schema: pa.Schema, embedder: str) -> Any:
        # On a bucket `id` is the primary key: several daemons insert at once. (A local
        # store keeps a nullable id, as it always had; a second process writing it is
        # rare, and a duplicate it leaves is removed after the commit, see `dedupe`.)
        if self.remote:
            schema = with_primary_key(schema)
        table = create_or_open(self._db, name, schema, self.location, SCHEMA_VERSION)
        version = schema_version(table)
        if version in MIGRATABLE:
            table = migrate_once(self, name, table, schema)
            version = schema_version(table)
        meta = schema_meta(table)
        if version != SCHEMA_VERSION:
            raise PermanentError(
                f"the store's {name} table has schema version {version}, this memoryd "
                f"reads {SCHEMA_VERSION}; move the store folder aside to rebuild it from "
                "the journal")
        if meta.get("memoryd.embedder") != embedder:
            raise PermanentError(
                f"the store was embedded with {meta.get('memoryd.embedder')!r}, the config "
                f"asks for {embedder!r}; set [models] embedder back, or move the store "
                "folder aside to re-embed from the journal")
        ensure_fts(table, self.location)  # also when a daemon died before indexing it
        return table

    # -- writing ---------------------------------------------------------------------
    # Every commit below goes through daemon/store/retry.py, which retries one lost to
    # another writer (a daemon on the same bucket, another thread of this worker).

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
        with self._lock, self._writing(f"{len(rows)} {name} rows"):
            retrying("upsert", lambda: self._upsert_rows(name, table, rows),
                     where=self.location, refresh=table.checkout_latest)
            ids = sorted({str(r["id"]) for r in rows})
            if retrying("dedupe", lambda: dedupe(table, ids), where=self.location,
                        refresh=table.checkout_latest):
                count("duplicates removed")
            self._unindexed[name] += len(rows)
            if self._unindexed[name] >= self.optimize_rows:
                self._optimize(name, table)

    @contextlib.contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """A full or read-only disk becomes StoreUnwritable saying what to do."""
        try:
            yield
        except (OSError, RuntimeError, ValueError) as exc:
            full = unwritable(exc, str(self.location), what)
            if full is None:
                raise
            raise full from exc

    def _upsert_rows(self, name: str, table: Any, rows: list[dict[str, Any]]) -> None:
        """Upsert where other processes may commit too. Rows go in the table's own schema
        so Lance sees `id` as the primary key and records the inserted ids: two writers
        inserting one new id at once then conflict and the loser retries as an update,
        instead of both appending it. A table a newer memoryd migrated meanwhile is
        refused, not written. On object storage a failed request is
        ObjectStoreUnavailable (a conflict goes back to `retrying`)."""
        from daemon.store.objectstore import ObjectStoreUnavailable

        try:
            schema = table.schema  # a read: with refresh_seconds = 0 it asks the bucket
            found = (schema.metadata or {}).get(b"memoryd.schema_version", b"").decode()
            refuse_newer(name, found, SCHEMA_VERSION, self.location)
            data = pa.Table.from_pylist(
                [{f.name: r.get(f.name) for f in schema} for r in rows], schema=schema)
            (table.merge_insert("id").when_matched_update_all()
             .when_not_matched_insert_all().execute(data))
        except (OSError, RuntimeError) as exc:
            if is_conflict(exc) or not self.remote:
                raise  # retried by the caller, or a local disk's error
            raise ObjectStoreUnavailable(
                f"writing {len(rows)} rows to the store at {self.location} failed: "
                f"{str(exc).splitlines()[0][:300]}. Nothing was committed; the write is "
                "retried when the object storage answers again") from exc

    def _optimize(self, name: str, table: Any) -> None:
        # New rows are searched by a flat scan until optimize folds them into the index.
        if self.remote:  # old versions go once no other daemon can be rebasing on them
            retrying("optimize", partial(self._cleanup, table), where=self.location,
                     refresh=table.checkout_latest)
        else:
            retrying("optimize", table.optimize, where=self.location,
                     refresh=table.checkout_latest)
        self._unindexed[name] = 0
        ann.refresh(table, self.ann_min_rows, self.location)

    def optimize(self) -> None:
        with self._lock, self._writing("the optimized indexes"):
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
        return self.vector_search_soon(table, vector, k, where).result()

    def vector_search_soon(self, table: str, vector: list[float], k: int,
                           where: str | None = None) -> Future[list[Hit]]:
        """The `k` nearest rows by cosine (filtered first), started: see searches.py."""
        t = self.events if table == "events" else self.memories
        return searches.vector(t, table, vector, k, where, self._hit_columns[table])

    def text_search(self, table: str, text: str, k: int, where: str | None = None) -> list[Hit]:
        return self.text_search_soon(table, text, k, where).result()

    def text_search_soon(self, table: str, text: str, k: int,
                         where: str | None = None) -> Future[list[Hit]]:
        t = self.events if table == "events" else self.memories
        return searches.text(t, table, text, k, where, self._hit_columns[table])

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
        for part, where in id_filters(ids):
            found = (t.search().where(where)
                     .select(self._hit_columns[table]).limit(len(part)).to_list())
            out.extend(hit(table, r, 0.0) for r in found)
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

    def delete(self, table: str, where: str, path: str = "delete") -> int:
        """Delete the rows of `table` matching `where`; return how many went. `path`
        names the write for the conflict counters (forget, retention, supersede)."""
        t = self.events if table == "events" else self.memories
        def attempt() -> int:
            n = int(t.count_rows(where))
            if n:
                t.delete(where)
            return n

        with self._lock, self._writing(f"a deletion from {table}"):
            return retrying(path, attempt, where=self.location, refresh=t.checkout_latest)

    def purge(self) -> None:
        """Fold deletions into the indexes and drop old versions from disk, so deleted
        rows cannot be read back from an earlier version of a table (forget means gone).
        On a shared store versions younger than `cleanup_grace` stay (other daemons may be
        committing against them); the next optimize or purge after it removes them."""
        import warnings

        with self._lock, warnings.catch_warnings(), self._writing("the store's cleanup"):
            # LanceDB warns that readers of older versions fail: here that is the point.
            warnings.filterwarnings("ignore", message=".*cleanup_older_than.*")
            for name, t in (("events", self.events), ("memories", self.memories)):
                retrying("cleanup", partial(self._cleanup, t), where=self.location,
                         refresh=t.checkout_latest)
                self._unindexed[name] = 0

    def _cleanup(self, t: Any) -> None:
        # Never `delete_unverified`: another process's write in flight (a daemon on the
        # bucket, `ingest --once` beside the daemon) has files no version lists yet, and
        # deleting them breaks the version it is about to commit.
        t.optimize(cleanup_older_than=timedelta(seconds=self.cleanup_grace),
                   delete_unverified=False)


def _session(cache_mb: int) -> Any:
    """LanceDB's caches: 4/5 of `cache_mb` for indexes, 1/5 for table metadata (None:
    LanceDB's defaults, which grow to GBs on a busy table: bench/README.md)."""
    if cache_mb <= 0:
        return None
    return lancedb.Session(index_cache_size_bytes=(cache_mb << 20) * 4 // 5,
                           metadata_cache_size_bytes=(cache_mb << 20) // 5)


def open_store(cfg: Any, dims: int, embedder: str,
               refresh_seconds: float | None = None) -> Store:
    """The store `cfg` names: `[store] uri` on object storage, else <data_dir>/store;
    it stamps what it writes with `[identity]` device and user. `refresh_seconds`: how
    stale a local store's reads may be (None: only this process writes to it)."""
    from daemon.owners import identity

    owner = identity(cfg)
    if not cfg.store.uri:
        return Store(cfg.data_path / "store", dims, embedder, owner=owner,
                     optimize_rows=cfg.store.optimize_rows,
                     cleanup_grace=cfg.store.cleanup_grace_seconds,
                     refresh_seconds=refresh_seconds, ann_min_rows=cfg.search.ann_min_rows,
                     cache_mb=cfg.store.cache_mb)
    from daemon.store.objectstore import check_conditional_writes, store_settings

    s = store_settings(cfg.store)
    if cfg.store.check_conditional_writes:
        check_conditional_writes(s)
    return Store(s.uri, dims, embedder, storage_options=s.storage_options(),
                 refresh_seconds=cfg.store.refresh_seconds, owner=owner,
                 optimize_rows=cfg.store.optimize_rows,
                 cleanup_grace=cfg.store.cleanup_grace_seconds,
                 ann_min_rows=cfg.search.ann_min_rows, cache_mb=cfg.store.cache_mb)


def event_row(ev: Any, vector: list[float]) -> dict[str, Any]:
    """Given a collectors.base.Event and its embedding, return an `events` row."""
    return {
        "id": ev.id, "ts": ev.ts, "source": ev.source, "kind": ev.kind,
        "subject": ev.subject, "title": ev.title, "text": ev.text,
        "attrs": json.dumps(ev.attrs, sort_keys=True, default=str),
        "doc": event_doc(ev), "vector": vector,
    }


def event_doc(ev: Any) -> str:
    """The text an event is found by: its title, subject, key words (URL path words, a
    command's arguments, a file name split) and content (`daemon.pipeline.eventtext`).
    Older rows keep the doc they were written with: both read alike."""
    from daemon.pipeline.eventtext import event_doc as doc

    return doc(ev)

