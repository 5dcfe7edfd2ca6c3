"""Chunk memories no model reads, written many at a time.

A heavy home's history makes thousands of small chunks (one to three events: a sparse
day's commands and visits). Written one by one, each cost one embedding call, one LanceDB
upsert, one forget check and one supersede delete, each a commit of its own: ~0.5 s a
chunk, 1.4-2.4 events/s. Here a batch of chunks costs one of each.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from collectors.base import Event
from daemon.pipeline import summarize
from daemon.pipeline.chunking import Chunk
from daemon.store.filters import id_filters, sql_str

if TYPE_CHECKING:
    from daemon.store.engine import Engine

log = logging.getLogger(__name__)


def as_chunk(events: list[Event]) -> Chunk:
    return Chunk(tuple(sorted(events, key=lambda e: (e.ts, e.id))))


def embed_doc(row: dict[str, Any]) -> str:
    """What a chunk memory's vector is made from: its title and text without the
    "Mentions:" list (the doc indexes that list for full text)."""
    main = row["text"].split(summarize.MENTIONS_LINE, 1)[0]
    return f"{row['title']}\n{main}"[:2000]


def write_extracted(engine: Engine, chunks: list[Chunk]) -> list[dict[str, Any]]:
    """Store the extracted memory of each chunk (no model): one embedding call, one
    upsert, one forget check, one supersede delete for all. A memory a model wrote for
    the same chunk before stays. Return one result per chunk, as `Engine.summarize`."""
    ids = [c.id for c in chunks]
    kept = {r["id"]: r["text"] for r in engine.store.memory_rows(
        f"id IN ({', '.join(sql_str(i) for i in ids)}) AND "
        f"model != {sql_str(summarize.FALLBACK_MODEL)}", ["id", "text"]) if r["text"]}
    fresh = [c for c in chunks if c.id not in kept]
    rows = [summarize.memory_row(c, summarize.chunk_fields(c, ""), summarize.FALLBACK_MODEL,
                                 []) for c in fresh]
    for row, vector in zip(rows, engine.models.embed([embed_doc(r) for r in rows]),
                           strict=True):
        row["vector"] = vector
    if rows:
        engine.store.upsert_memories(rows)
    gone = _forgotten(engine, fresh)
    engine._supersede(chunks)
    results = []
    for c in chunks:
        base = {"id": c.id, "events": len(c.events), "fallback": True, "tokens": 0,
                "model_asked": False, "seconds": 0.0, "model_text": "", "unsupported": []}
        if c.id in kept:
            results.append({**base, "summary": kept[c.id], "kept": True})
        elif c.id in gone:
            results.append({**base, "summary": "", "forgotten": True})
        else:
            row = next(r for r in rows if r["id"] == c.id)
            results.append({**base, "summary": row["text"]})
    return results


def _forgotten(engine: Engine, chunks: list[Chunk]) -> set[str]:
    """Delete the new memories of chunks one of whose events a forget removed while they
    were written; return their ids."""
    from daemon.intake.tombstones import forgotten_among

    gone_events = forgotten_among(engine.cfg.data_path / "journal.sqlite3",
                                  [e.id for c in chunks for e in c.events])
    gone = {c.id for c in chunks if any(e.id in gone_events for e in c.events)}
    if gone:
        log.info("%d memories written while a forget ran were forgotten: deleting them "
                 "again", len(gone))
        for _, where in id_filters(sorted(gone)):
            engine.store.delete("memories", where, path="forget")
    return gone

