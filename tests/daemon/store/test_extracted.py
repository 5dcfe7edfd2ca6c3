"""Chunk memories no model reads are written many at a time (daemon/store/extracted.py),
with the real embedder and LanceDB: the same memories as one by one, searchable, a model's
memory kept, an unacknowledged one replaced, a forgotten one not written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from collectors.base import Event
from daemon.config import load_config
from daemon.store.engine import Engine


def _chunk(day: int, what: str, n: int = 2) -> list[Event]:
    t0 = datetime(2026, 11, day, 10, tzinfo=UTC)
    return [Event.new(ts=t0 + timedelta(minutes=i), source="shell", kind="shell.command",
                      subject=f"cargo test -p {what} --test case{i}") for i in range(n)]


def test_a_batch_writes_what_one_by_one_writes_and_is_searchable(make_config) -> None:
    cfg = load_config(make_config(compaction={"enabled": False, "chunk_model": "never"}))
    chunks = [_chunk(3, "tidepool"), _chunk(4, "ledgerline"), _chunk(5, "quillmark", 3)]
    one = Engine(cfg)
    try:
        one.index([e for c in chunks for e in c])
        singly = {r["id"]: r["summary"] for r in (one.summarize(c) for c in chunks)}
        rows = one.store.memory_rows("level = 'chunk'", ["id", "text", "vector"])
        alone = {r["id"]: (r["text"], list(r["vector"])) for r in rows}
        one.store.delete("memories", "level = 'chunk'")
        results = one.summarize_many(chunks)
        assert [r["id"] for r in results] == list(singly)
        assert {r["id"]: r["summary"] for r in results} == singly
        assert all(not r["model_asked"] and r["tokens"] == 0 for r in results)
        rows = one.store.memory_rows("level = 'chunk'", ["id", "text", "vector", "model"])
        assert {r["id"] for r in rows} == set(singly)
        for r in rows:  # the same text and vector as written one by one
            text, vector = alone[r["id"]]
            assert r["text"] == text and r["model"] == "deterministic"
            assert max(abs(a - b) for a, b in zip(r["vector"], vector, strict=True)) < 1e-5
        hits = one.search("quillmark tests", 3, raw=False)
        assert hits and hits[0].id == results[2]["id"]
    finally:
        one.close()


def test_a_model_memory_is_kept_and_an_unacknowledged_one_replaced(make_config) -> None:
    cfg = load_config(make_config(compaction={"enabled": False, "chunk_model": "never"}))
    kept, grown = _chunk(6, "harbor"), _chunk(7, "beacon", 3)
    engine = Engine(cfg)
    try:
        engine.index(kept + grown)
        first = engine.summarize_many([kept, grown[:2]])  # then a crash before the journal
        _as_model(engine, first[0]["id"])
        again = engine.summarize_many([kept, grown])  # the restart: one chunk grew
        assert again[0].get("kept") and again[0]["summary"] == "written by a model earlier"
        rows = engine.store.memory_rows("level = 'chunk'", ["id", "event_ids", "model"])
        assert sorted(r["id"] for r in rows) == sorted([first[0]["id"], again[1]["id"]])
        covered = [e for r in rows for e in r["event_ids"]]
        assert sorted(covered) == sorted(e.id for e in kept + grown)  # each event once
    finally:
        engine.close()


def _as_model(engine: Engine, memory_id: str) -> None:
    """Make the stored memory `memory_id` one a model wrote (as `chunk_model` "always"
    would have), through the store's own upsert."""
    row = engine.store.memory_rows(f"id = '{memory_id}'")[0]
    engine.store.upsert_memories([{**row, "model": "qwen2.5-coder-0.5b-instruct",
                                   "text": "written by a model earlier"}])
