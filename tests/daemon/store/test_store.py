"""Round trips through a real LanceDB store with real embeddings."""

from __future__ import annotations

import logging

from pathlib import Path

import pytest

from collectors.base import Event
from daemon.pipeline.chunking import Chunk
from daemon.errors import PermanentError
from daemon.recall.search import fts_query, hybrid_search
from daemon.store.lance import Store, event_doc, event_row
from daemon.pipeline.summarize import memory_row
from models.assets import embedder_path
from models.sentence_tf import SentenceTransformerBackend


@pytest.fixture(scope="module")
def embedder() -> SentenceTransformerBackend:
    return SentenceTransformerBackend(embedder_path("all-minilm-l6-v2"), name="all-minilm-l6-v2",
                                      dimensions=384, idle_seconds=0)


EVENTS = [
    Event.new(ts=1_763_000_000, source="files", kind="file.modified", subject="/src/crm/score.py",
              title="score.py", text="def lead_score(lead): return lead.budget * 0.3"),
    Event.new(ts=1_763_000_060, source="browser", kind="browser.visit",
              subject="https://docs.lancedb.com/fts", title="Full-text search - LanceDB"),
    Event.new(ts=1_763_000_120, source="shell", kind="shell.command",
              subject="pytest tests/test_score.py -k threshold", text="exit 1"),
]


def test_events_and_memories_round_trip_and_upserts_are_idempotent(
        tmp_path: Path, embedder: SentenceTransformerBackend) -> None:
    store = Store(tmp_path / "store", 384, "all-minilm-l6-v2")
    vecs = embedder.embed([event_doc(e) for e in EVENTS])
    rows = [event_row(e, v) for e, v in zip(EVENTS, vecs, strict=True)]
    store.upsert_events(rows)
    chunk = Chunk(tuple(EVENTS[:2]))
    mem = memory_row(chunk, "Worked on lead scoring in score.py and read LanceDB docs.",
                     "test-model", embedder.embed(["lead scoring and LanceDB"])[0])
    store.upsert_memories([mem])
    store.upsert_events(rows)  # a replay after a crash
    store.upsert_memories([mem])
    assert store.counts() == {"events": 3, "memories": 1}

    reopened = Store(tmp_path / "store", 384, "all-minilm-l6-v2")
    text_hits = reopened.text_search("events", "lead_score budget", 5)
    assert text_hits[0].id == EVENTS[0].id
    assert text_hits[0].ts == EVENTS[0].ts
    mem_hits = reopened.text_search("memories", "LanceDB", 5)
    assert mem_hits[0].id == chunk.id
    assert set(mem_hits[0].event_ids) == {EVENTS[0].id, EVENTS[1].id}  # links to its events
    assert mem_hits[0].kind == "memory.chunk"
    q = "which pytest command failed"
    hits = hybrid_search(reopened, q, embedder.embed([q])[0], 3)
    assert hits[0].id == EVENTS[2].id
    only_files = hybrid_search(reopened, q, embedder.embed([q])[0], 5, source="files")
    assert {h.source for h in only_files} == {"files"}


def test_a_store_made_by_another_embedder_is_refused(tmp_path: Path) -> None:
    Store(tmp_path / "store", 384, "all-minilm-l6-v2")
    with pytest.raises(PermanentError, match="move the store folder aside"):
        Store(tmp_path / "store", 384, "some-other-embedder")


def test_queries_with_syntax_characters_do_not_break_search(
        tmp_path: Path, embedder: SentenceTransformerBackend, caplog) -> None:
    store = Store(tmp_path / "store", 384, "all-minilm-l6-v2")
    store.upsert_events([event_row(e, embedder.embed([event_doc(e)])[0]) for e in EVENTS])
    caplog.set_level(logging.WARNING, logger="daemon.recall.search")
    for q in ['"unbalanced lead_score', "lead_score AND OR (", "score.py:12 lead_score",
              "*?~^ lead_score", "'; DROP TABLE events; -- lead_score"]:
        hits = hybrid_search(store, q, embedder.embed([q])[0], 3)
        assert hits and hits[0].id == EVENTS[0].id, (q, [h.id for h in hits])
        # the full-text half ran: it did not fall back to vectors alone
        assert not [r for r in caplog.records if "full-text search failed" in r.message], q
        assert store.text_search("events", fts_query(q), 5, None), q


def test_many_writers_opening_a_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    # The worker serves calls from several threads, and a second memoryd process may open
    # the same store: the first opens race to create and index the tables.
    import threading

    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def open_it() -> None:
        try:
            start.wait()
            Store(tmp_path / "store", 384, "all-minilm-l6-v2")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    store = Store(tmp_path / "store", 384, "all-minilm-l6-v2")
    assert [i.index_type for i in store.events.list_indices()] == ["FTS"]
    assert [i.index_type for i in store.memories.list_indices()] == ["FTS"]


def test_lancedbs_caches_stay_inside_cache_mb(
        tmp_path: Path, embedder: SentenceTransformerBackend) -> None:
    """Each upsert is a table version whose metadata LanceDB caches; bounded by `[store]
    cache_mb`, a busy store's caches stop growing (LanceDB's defaults grow to GBs)."""
    from daemon.store.lance import _session

    assert _session(0) is None  # LanceDB's defaults, as asked
    store = Store(tmp_path / "store", 384, "all-minilm-l6-v2", cache_mb=1)
    session = store.cache
    vec = embedder.embed(["lead scoring"])[0]
    for i in range(60):  # 60 versions, each searched
        store.upsert_events([event_row(Event.new(
            ts=1_763_000_000 + i, source="shell", kind="shell.command",
            subject=f"make target-{i}"), vec)])
        hybrid_search(store, f"target-{i}", vec, 3)
    assert store.counts()["events"] == 60
    assert 0 < session.size_bytes <= 1 << 20
