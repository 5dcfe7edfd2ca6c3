"""The engine: the heavy half of memoryd (LanceDB store, embedder, summarizer).

It runs inside the worker process while the daemon is busy and leaves with it when idle,
so the daemon itself stays small. `ingest --once` and a local `search` use it in-process.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from collectors.base import Event
from daemon.config import Config
from daemon.owners import EVERYONE, Owners, owner_key
from daemon.pipeline import summarize
from daemon.pipeline.chunking import Chunk
from daemon.pipeline.summarize import Fields
from daemon.recall import reads as recall
from daemon.recall.hits import Hit
from daemon.recall.search import Filters
from daemon.routing.modelcalls import ModelCalls
from daemon.store import extracted, memtrim
from daemon.store.filters import id_filters, sql_str
from daemon.store.lance import Store, event_doc, event_row, open_store
from models.errors import ModelError

log = logging.getLogger(__name__)


class Engine:
    """The `MemoryEngine` (daemon/store/interface.py) over the local store and models."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.models = ModelCalls(cfg)
        self._store: Store | None = None
        self._digest_errors: list[str] = []  # why the model gave a digest no answer
        self._opening = threading.Lock()
        self.refresh_seconds: float | None = None  # local reads: None never re-check commits
        # How a query becomes a vector; the resident reader swaps in its torch-free one.
        self.query_embed: Callable[[list[str]], list[list[float]]] = self.models.embed
        self.heap: memtrim.IdleTrim | None = None  # set by the child process serving it

    @property
    def store(self) -> Store:
        # The worker serves calls from several threads: the first ones must not each open
        # (and, on a new store, create and index) the tables at once.
        with self._opening:
            if self._store is None:
                self._store = open_store(self.cfg, self.models.embedder.dimensions,
                                         self.cfg.models.embedder, self.refresh_seconds)
            return self._store

    def index(self, events: list[Event]) -> int:
        """Embed events and upsert them into the store; they are searchable on return.

        A forget may run while this batch is embedded and written: it writes its
        tombstones before it deletes from the store (daemon/service.py), and this step
        reads them after its own commit, so an event forgotten meanwhile is deleted
        again here whichever of the two commits first."""
        if not events:
            return 0
        store = self.store  # opened (created, migrated) before the long embedding
        vectors = self.models.embed([event_doc(e)[:2000] for e in events])
        store.upsert_events([event_row(e, v) for e, v in zip(events, vectors, strict=True)])
        self._drop_forgotten("events", [e.id for e in events], [e.id for e in events])
        return len(events)

    def _drop_forgotten(self, table: str, event_ids: list[str], row_ids: list[str]) -> int:
        """Delete `row_ids` from `table` if any of `event_ids` was forgotten meanwhile."""
        from daemon.intake.tombstones import forgotten_among

        gone = forgotten_among(self.cfg.data_path / "journal.sqlite3", event_ids)
        if not gone:
            return 0
        drop = sorted(gone) if table == "events" else row_ids
        log.info("%d rows written while a forget ran were forgotten: deleting them again",
                 len(drop))
        return sum(self.store.delete(table, where, path="forget")
                   for _, where in id_filters(drop))

    def summarize(self, events: list[Event]) -> dict[str, Any]:
        """Summarize one chunk (model under a JSON schema, identifiers checked and put
        back) and store it as a memory. A memory the model wrote is never replaced by a
        fallback one: when the model fails on a chunk it summarized before, the old
        memory stays."""
        chunk = extracted.as_chunk(events)
        asked = self._asks_model(chunk)
        out = self.models.complete(
            "compaction", summarize.prompt(chunk), max_tokens=summarize.answer_tokens(
                len(events), self.cfg.compaction.chunk_max_tokens),
            temperature=0.2, response_format=summarize.RESPONSE_FORMAT) if asked else None
        fields = summarize.chunk_fields(chunk, out.text if out else "")
        if out is not None:
            self._record_faithfulness("chunk", out.model, fields, chunk.id)
        model = out.model if out is not None and not fields.fallback else summarize.FALLBACK_MODEL
        result = {"id": chunk.id, "events": len(events), "fallback": fields.fallback,
                  "tokens": out.completion_tokens if out else 0, "model_asked": asked,
                  "seconds": out.seconds if out else 0.0,
                  "model_text": fields.model_text, "unsupported": fields.unsupported}
        if fields.fallback:
            if asked:
                log.warning("the model's summary of %d %s events was empty or unusable; "
                            "writing one from the events", len(events), chunk.source)
            old = self.store.memory_rows(f"id = '{chunk.id}'", ["id", "model", "text"])
            if old and old[0]["model"] != summarize.FALLBACK_MODEL and old[0]["text"]:
                self._supersede([chunk])
                return {**result, "summary": old[0]["text"], "kept": True}
        row = summarize.memory_row(chunk, fields, model, [])
        row["vector"] = self.models.embed([extracted.embed_doc(row)])[0]
        self.store.upsert_memories([row])
        if self._drop_forgotten("memories", [e.id for e in events], [row["id"]]):
            return {**result, "summary": "", "forgotten": True}
        self._supersede([chunk])
        return {**result, "summary": row["text"]}

    def summarize_many(self, chunks: list[list[Event]]) -> list[dict[str, Any]]:
        """Summarize several chunks, one result each in their order: those the model
        reads one by one (`summarize`), the others' extracted memories in one batch
        (daemon/store/extracted.py)."""
        whole = [extracted.as_chunk(events) for events in chunks]
        batch = iter(extracted.write_extracted(
            self, [c for c in whole if not self._asks_model(c)]))
        return [self.summarize(list(c.events)) if self._asks_model(c) else next(batch)
                for c in whole]

    def _asks_model(self, chunk: Chunk) -> bool:
        mode = self.cfg.compaction.chunk_model_mode
        return mode == "always" or (mode == "stated" and summarize.needs_model(chunk))

    def _record_faithfulness(self, level: str, model: str, fields: Fields,
                             memory_id: str) -> None:
        """One line per model answer in <data_dir>/faithfulness.jsonl: which memory, which
        model, what it named that its sources lack (dropped before storing) and whether
        the answer was unusable. The hallucination rate per model is read from it
        (`bench/memory_quality.py`)."""
        if not model or not fields.model_text:
            return
        line = {"ts": datetime.now(UTC).isoformat(timespec="seconds"), "level": level,
                "id": memory_id, "model": model, "unsupported": fields.unsupported[:20],
                "fallback": fields.fallback}
        if fields.unsupported:
            log.info("the %s summary by %s named what its sources lack (dropped): %s",
                     level, model, ", ".join(fields.unsupported[:5]))
        try:
            self.cfg.data_path.mkdir(parents=True, exist_ok=True)
            with open(self.cfg.data_path / "faithfulness.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")
        except OSError as exc:
            log.warning("could not record the faithfulness check (%s); the memory is "
                        "stored all the same", exc)

    def _supersede(self, chunks: list[Chunk]) -> int:
        """Delete this daemon's other chunk memories of any of `chunks`' events, in one
        delete. Such a memory was written for a chunk whose journal update never happened
        (a crash between the store write and the journal's): its events are still
        waiting, so the chunk they are in now may differ (new events joined it) and gets
        another id. Left alone, those events would be covered twice. Runs after the new
        memories are stored, so an event is never without one; a crash before it runs
        repeats it."""
        if not chunks:
            return 0
        mine = ", ".join(sql_str(c.id) for c in chunks)
        events = ", ".join(sql_str(e.id) for c in chunks for e in c.events)
        where = (f"level = 'chunk' AND id NOT IN ({mine}) AND "
                 f"array_has_any(event_ids, make_array({events})) AND {self._own().where()}")
        gone = self.store.delete("memories", where, path="supersede")
        if gone:
            log.info("replaced %d unacknowledged chunk memories of the same events", gone)
        return gone

    def compact(self, max_digests: int = 0, past_only: bool = False) -> dict[str, Any]:
        """Write the day digests, then the week digests, that are missing or stale; at
        most `max_digests` model calls (0: no limit); `past_only`: not today's (the user's
        day, still being written). Return what was written, and whether more is stale.

        A summarizer these digests loaded leaves memory when they are written, not after
        [models] idle_unload_seconds: by default no chunk summary asks it, so until the
        next digests (10 minutes or more away) it would only sit beside the embedder's
        batches, ~590 MB of the worker's peak, for a reload that takes under a second
        (bench/README.md, the backfill). One loaded before, for a completion, stays."""
        loaded = self.models.summarizer_loaded()
        try:
            return self._compact(max_digests, past_only)
        finally:
            if not loaded:
                self.models.release_summarizer("the digests are written")

    def _compact(self, max_digests: int, past_only: bool) -> dict[str, Any]:
        from daemon.pipeline import compaction

        written: list[str] = []
        more, calls = False, 0  # stale digests left for the next run; model digests
        self._digest_errors = []
        tz = recall.user_tz(self.cfg)  # the user's days and weeks, as the read path's
        # A daemon digests only its own memories (its device and user): a day digest mixing
        # another person's would leak them to whoever may read this user's. Each owner's
        # digest is its own row (`day-…~user@device`), on a shared store or a local one
        # that pulls a peer's digests.
        own = self._own().where()
        mine = owner_key(self.store.device, self.store.user)
        suffix = f"~{mine}" if mine else ""
        today = datetime.now(tz).date().isoformat()
        for level, below in (("day", "chunk"), ("week", "day")):
            # Which periods are stale needs three columns of each member; their whole rows
            # (texts, lists) are read only for the periods digested now. Every member read
            # whole, after a 90-day backfill, put the worker's own memory at 366-411 MB
            # through the digests' model calls; now 335-345 (bench/README.md).
            members = self.store.memory_rows(f"level = '{below}' AND {own}",
                                             compaction.STALE_COLUMNS)
            digests = self.store.memory_rows(f"level = '{level}' AND {own}",
                                             compaction.ROW_COLUMNS)
            old = {d["id"]: d for d in digests}
            for key, light in compaction.stale_periods(level, members, digests, tz,
                                                       suffix).items():
                if past_only and key == today:
                    continue
                if max_digests and level in compaction.MODEL_LEVELS:
                    if calls >= max_digests:  # only the model's digests are counted
                        more = True
                        break
                    calls += 1
                rows = self._whole_rows(light)
                written.append(self._digest(level, key, rows, old.get(
                    compaction.digest_id(level, key, suffix)), tz, suffix))
        return {"written": written, "model_errors": self._digest_errors, "more": more}

    def _whole_rows(self, light: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The whole rows (compaction.ROW_COLUMNS) of the memories in `light`, in its order;
        one that went meanwhile is left out (its period is stale again at the next run)."""
        from daemon.pipeline import compaction

        ids = [r["id"] for r in light]
        got: dict[str, dict[str, Any]] = {}
        for _, where in id_filters(ids):
            got.update((r["id"], r) for r in self.store.memory_rows(where,
                                                                     compaction.ROW_COLUMNS))
        return [got[x] for x in ids if x in got]

    def prune_events(self, older_than_days: int) -> int:
        """Drop raw events older than `older_than_days` from the store (retention); the
        chunk memories and digests made from them stay. Return how many left."""
        if older_than_days <= 0:
            return 0
        cutoff = (datetime.now(UTC) - timedelta(days=older_than_days)).replace(tzinfo=None)
        where = f"ts < CAST('{cutoff.isoformat(timespec='seconds')}' AS TIMESTAMP)"
        gone = self.store.delete("events", where, path="retention")
        if gone:
            log.info("retention: dropped %d raw events older than %d days", gone,
                     older_than_days)
        return gone

    def _own(self) -> Owners:
        """This daemon's own rows: its device and its user."""
        return Owners(devices=(self.store.device,), users=(self.store.user,))

    def _digest(self, level: str, key: str, rows: list[dict[str, Any]],
                old: dict[str, Any] | None, tz: tzinfo, owner: str = "") -> str:
        from daemon.pipeline import compaction

        answer, model = "", ""
        if level in compaction.MODEL_LEVELS:  # a week's prose is its days'
            try:
                out = self.models.complete("compaction", compaction.prompt(level, key, rows),
                                           max_tokens=self.cfg.compaction.digest_max_tokens,
                                           temperature=0.2)
                answer, model = out.text, out.model
            except ModelError as exc:  # the merged fields are still worth writing
                log.warning("the %s digest %s got no model answer (%s)", level, key, exc)
                self._digest_errors.append(str(exc))
        fields = compaction.digest_fields(level, key, rows, answer)
        self._record_faithfulness(level, model, fields,
                                  compaction.digest_id(level, key, owner))
        if fields.fallback:
            fields = compaction.keep_prose(fields, old)
            kept = fields.summary != compaction.fallback_summary(level, key, rows)
            model = old["model"] if kept and old else summarize.FALLBACK_MODEL
        row = compaction.digest_row(level, key, rows, fields, model, [], tz, owner)
        row["vector"] = self.models.embed([row["doc"][:2000]])[0]  # its extracted part
        self.store.upsert_memories([row])
        log.info("wrote the %s digest %s from %d memories (%s)", level, key, len(rows), model)
        return str(row["id"])

    def search(self, query: str, k: int = 10, source: str | None = None,
               since: datetime | None = None, until: datetime | None = None,
               kind: str | None = None, project: str | None = None,
               level: str | None = None, now: datetime | None = None,
               devices: tuple[str, ...] | None = None,
               users: tuple[str, ...] | None = None, raw: bool = True) -> list[Hit]:
        """Hybrid search; a time expression in the query becomes the range (daemon/recall).
        `devices` and `users` restrict whose rows are searched (None: anyone's); `raw`
        False searches memories only (a token without memory:raw)."""
        return recall.search(self.store, self.query_embed, query, k,
                             Filters(source=source, since=since, until=until, kind=kind,
                                     project=project, level=level, devices=devices,
                                     users=users, raw=raw),
                             now=now, tz=recall.user_tz(self.cfg))

    # The read path besides search (daemon/recall.py, daemon/context.py).
    # `owners` (daemon/owners.py) restricts whose rows each of them reads.
    def recent(self, limit: int = 20, source: str | None = None,
               owners: Owners = EVERYONE) -> list[Hit]:
        return recall.recent(self.store, limit, source, owners)

    def timeline(self, since: datetime | None, until: datetime | None,
                 source: str | None = None, owners: Owners = EVERYONE) -> list[Hit]:
        return recall.timeline(self.store, since, until, source, owners=owners)

    def digest(self, period: str = "day", day: date | None = None,
               owners: Owners = EVERYONE) -> dict[str, Any]:
        tz = recall.user_tz(self.cfg)
        return recall.digest(self.store, period, day or datetime.now(tz).date(), tz,
                             owners=owners, prefer=(self.store.device, self.store.user))

    def context(self, query: str, budget_tokens: int, now: datetime | None = None,
                owners: Owners = EVERYONE, raw: bool = True,
                fresh: tuple[Hit, ...] = ()) -> dict[str, Any]:
        return recall.context(self.store, self.query_embed, query, budget_tokens, now=now,
                              tz=recall.user_tz(self.cfg), owners=owners, raw=raw,
                              fresh=fresh)

    def forget(self, since: datetime | None = None, until: datetime | None = None,
               source: str | None = None, query: str | None = None,
               dry_run: bool = False, owners: Owners = EVERYONE) -> dict[str, Any]:
        return recall.forget(self.store, since, until, source, query, dry_run, owners)

    def optimize(self) -> None:
        self.store.optimize()

    def export_memories(self, context_rows: int = 30) -> dict[str, Any]:
        """The `memories` table as Parquet bytes with counts and this machine's
        tombstones (ids only), for a sync snapshot."""
        from daemon.intake.tombstones import read_forgotten
        from daemon.sync.exchange import export_memories

        return export_memories(self.store, context_rows,
                               read_forgotten(self.cfg.data_path / "journal.sqlite3"))

    def import_memories(self, segments: list[bytes], adm: Any = None) -> dict[str, Any]:
        """Check a peer's snapshot whole (daemon.sync.guard.Admission), apply its
        tombstones, then merge its memories by id."""
        from daemon.intake.tombstones import read_forgotten
        from daemon.sync.exchange import import_memories

        return import_memories(self.store, segments,
                               read_forgotten(self.cfg.data_path / "journal.sqlite3"), adm)

    def status(self) -> dict[str, Any]:
        from daemon.store.retry import conflict_counts

        return {"store": self.store.counts(), "models_loaded": self.models.loaded(),
                "store_conflicts": conflict_counts(), "store_cache_mb": cache_mb(self._store),
                **(self.heap.status() if self.heap else {})}

    def counts(self, owners: Owners = EVERYONE) -> dict[str, int]:
        """Events and memories of `owners` in the store."""
        return self.store.counts(owners.where())

    def complete_local(self, name: str, messages: list[Any],
                       params: dict[str, Any]) -> Any:
        """An embedded llama.cpp model's answer (the daemon's router calls this)."""
        return self.models.local_complete(name, messages, params)

    def embed_local(self, name: str, texts: list[str]) -> list[list[float]]:
        return self.models.local_embed(name, texts)

    def close(self) -> None:
        self.models.flush()
        self.models.embedder.unload()
        if self.models._chat is not None:
            self.models._chat.unload()


def cache_mb(store: Store | None) -> float | None:
    """What LanceDB's caches of `store` hold now, in MB (None: unbounded or not open)."""
    cache = getattr(store, "cache", None)
    return None if cache is None else round(cache.size_bytes / (1 << 20), 1)
