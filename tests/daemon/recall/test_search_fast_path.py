"""Search's fast path returns exactly what the plain path did, on a real LanceDB store with
its vector index: vector and full-text searches read only the columns a hit is made of
(daemon/store/hitrows.py), they are built with LanceDB's async API and started on its
event loop (daemon/store/searches.py), and a hybrid query runs its searches side by side.
The plain path here is the search as it was: LanceDB's synchronous builder, every column
read, the searches one after the other.

Vectors are seeded random unit vectors (64-d), texts drawn from a small vocabulary so a
query matches many rows; memories cover events (de-duplication folds them) and two
owners' rows are mixed (the filters hold)."""

from __future__ import annotations

import random
import threading
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from daemon.recall import search
from daemon.recall.hits import Hit
from daemon.recall.search import Filters, hybrid_search
from daemon.store import ann
from daemon.store.hitrows import hit
from daemon.store.lance import Store

DIMS = 64
T0 = datetime(2026, 11, 1, tzinfo=UTC)
WORDS = ("ranker billing tunnel invoice parser backup dashboard release timezone pricing "
         "onboarding leadscore atlas kestrel homelab memsync").split()


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIMS)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    rng, words = np.random.default_rng(3), random.Random(3)
    s = Store(tmp_path_factory.mktemp("fast") / "store", DIMS, "test-vectors",
              optimize_rows=10**9, ann_min_rows=300)
    ev_vecs, mem_vecs = unit(rng, 600), unit(rng, 400)
    events = [{"id": f"e{i:04d}", "ts": T0 + timedelta(minutes=i),
               "source": ("shell", "files")[i % 2],
               "kind": ("shell.command", "file.modified")[i % 2],
               "subject": f"make {words.choice(WORDS)}-{i}", "title": "",
               "text": " ".join(words.choices(WORDS, k=8)), "attrs": "{}",
               "doc": "", "vector": ev_vecs[i].tolist(), "device": "laptop",
               "user": ("alice", "bob")[i % 3 == 0]} for i in range(600)]
    for e in events:
        e["doc"] = f"{e['subject']} {e['text']}"
    s.upsert_events(events)
    memories = []
    for i in range(400):
        covered = [f"e{j:04d}" for j in range(i, 600, 150)][:3]  # overlapping groups
        text = " ".join(words.choices(WORDS, k=12))
        memories.append({
            "id": f"m{i:04d}", "ts": T0 + timedelta(minutes=i), "ts_end": T0 + timedelta(
                minutes=i + 5), "level": ("chunk", "day")[i % 5 == 0], "source": "shell",
            "title": f"{words.choice(WORDS)} work", "text": text, "event_ids": covered,
            "model": "test", "created": T0, "doc": text, "vector": mem_vecs[i].tolist(),
            "project": words.choice(WORDS), "sources": [], "identifiers": [f"ID-{i}"],
            "entities": [], "decisions": [], "open_tasks": [], "dates": [],
            "device": "laptop", "user": ("alice", "bob")[i % 3 == 0]})
    s.upsert_memories(memories)
    s.optimize()
    assert ann.vector_index(s.events) is not None and ann.vector_index(s.memories) is not None
    return s


def plain_vector(store: Store, table: str, vector: list[float], k: int,
                 where: str | None = None) -> list[Hit]:
    """Vector search as it was: whole rows."""
    t = store.events if table == "events" else store.memories
    q = ann.tuned(t.search(vector, vector_column_name="vector").distance_type("cosine")
                  .limit(k), k)
    if where:
        q = q.where(where, prefilter=True)
    return [hit(table, r, 1.0 - float(r["_distance"])) for r in q.to_list()]


def plain_text(store: Store, table: str, text: str, k: int,
               where: str | None = None) -> list[Hit]:
    t = store.events if table == "events" else store.memories
    q = t.search(text, query_type="fts", fts_columns="doc").limit(k)
    if where:
        q = q.where(where, prefilter=True)
    return [hit(table, r, float(r["_score"])) for r in q.to_list()]


QUERIES = ["ranker billing", "what did I do on the backup tunnel", "ID-17 invoice",
           "kestrel pricing release", "the"]
FILTERS = [Filters(), Filters(source="files"), Filters(users=("bob",)),
           Filters(since=T0 + timedelta(hours=3)), Filters(level="day"), Filters(raw=False)]


def queries() -> list[tuple[str, list[float]]]:
    vecs = unit(np.random.default_rng(11), len(QUERIES))
    return [(q, v.tolist()) for q, v in zip(QUERIES, vecs, strict=True)]


def test_vector_and_text_search_read_fewer_columns_with_the_same_hits(store: Store) -> None:
    for q, v in queries():
        for table in ("events", "memories"):
            for where in (None, "user = 'bob'"):
                fast = store.vector_search(table, v, 50, where)
                assert fast and fast == plain_vector(store, table, v, 50, where)
                text = search.fts_query(q)
                assert store.text_search(table, text, 50, where) == plain_text(
                    store, table, text, 50, where)


def test_hybrid_search_side_by_side_equals_the_plain_path(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    now = T0 + timedelta(days=1)
    fast: dict[tuple[str, int], list[Hit]] = {}
    for q, v in queries():
        for i, f in enumerate(FILTERS):
            fast[(q, i)] = hybrid_search(store, q, v, 10, filters=f, now=now)
    assert any(h.covers for hits in fast.values() for h in hits)  # de-duplication ran
    assert all(len(hits) == 10 for (q, i), hits in fast.items() if q != "the")

    # the plain path: whole rows, each search done before the next starts
    monkeypatch.setattr(store, "vector_search_soon", lambda *a: done(plain_vector(store, *a)))
    monkeypatch.setattr(store, "text_search_soon", lambda *a: done(plain_text(store, *a)))
    for q, v in queries():
        for i, f in enumerate(FILTERS):
            assert hybrid_search(store, q, v, 10, filters=f, now=now) == fast[(q, i)], (q, f)


def test_a_failing_search_leg_fails_the_query_after_the_others_finish(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []
    slow = threading.Event()
    vector_search_soon = store.vector_search_soon

    def broken(*args: Any) -> Future[list[Hit]]:
        ran.append("vector")
        failed: Future[list[Hit]] = Future()
        failed.set_exception(OSError("disk gone"))
        return failed

    def text(*args: Any) -> Future[list[Hit]]:
        ran.append("text")
        raise ValueError("bad query")  # a failing full-text leg only drops that list

    def late(*args: Any) -> Future[list[Hit]]:
        fut: Future[list[Hit]] = Future()
        threading.Timer(0.3, lambda: (slow.set(), fut.set_result(
            vector_search_soon(*args).result()))).start()
        return fut

    monkeypatch.setattr(store, "text_search_soon", text)
    q, v = queries()[0]
    hits = hybrid_search(store, q, v, 5, now=T0)
    assert len(hits) == 5 and sorted(ran) == ["text", "text"]
    calls = iter([broken, late])  # events fail at once, memories answer 0.3 s later
    monkeypatch.setattr(store, "vector_search_soon", lambda *a: next(calls)(*a))
    with pytest.raises(OSError, match="disk gone"):
        hybrid_search(store, q, v, 5, now=T0)
    assert slow.is_set()  # the failure surfaced only once the other search had ended


def done(hits: list[Hit]) -> Future[list[Hit]]:
    fut: Future[list[Hit]] = Future()
    fut.set_result(hits)
    return fut

