"""The vector index past `[search] ann_min_rows`, on a real LanceDB store.

Vectors are seeded random unit vectors (64-d) rather than embeddings: the index only
sees vectors, and a few hundred rows keep each test to seconds."""

from __future__ import annotations

import logging
import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from daemon.store import ann
from daemon.store.lance import Store

DIMS = 64
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def rows(start: int, n: int, seed: int) -> list[dict[str, Any]]:
    vecs = np.random.default_rng(seed).normal(size=(n, DIMS)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return [{"id": f"e{i:05d}", "ts": T0 + timedelta(minutes=i), "source": "shell",
             "kind": "shell.command", "subject": f"make test-{i}", "title": "", "text": "",
             "attrs": "{}", "doc": f"make test-{i}", "vector": vecs[i - start].tolist(),
             "device": "laptop", "user": ("alice", "bob")[i % 2]}
            for i in range(start, start + n)]


def store_at(path: Path, min_rows: int = 300) -> Store:
    # optimize only when the test says so (not after every 2,000 upserted rows)
    return Store(path, DIMS, "test-vectors", optimize_rows=10**9, ann_min_rows=min_rows)


def vector_of(store: Store, row_id: str) -> list[float]:
    found = store.events.search().where(f"id = '{row_id}'").select(["vector"]).to_list()
    return [float(x) for x in found[0]["vector"]]


def builds(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What ann.build logged it did: "built" / "rebuilt", one per (re)training."""
    return [r.getMessage().split()[0] for r in caplog.records
            if r.name == "daemon.store.ann" and "the vector index of" in r.getMessage()]


def test_index_built_once_past_the_threshold_and_searched_exactly(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="daemon.store.ann")
    store = store_at(tmp_path / "store")
    store.upsert_events(rows(0, 200, seed=1))
    store.optimize()
    assert ann.vector_index(store.events) is None  # 200 < 300: flat scan
    assert ann.vector_index(store.memories) is None

    store.upsert_events(rows(200, 200, seed=2))
    store.optimize()
    idx = ann.vector_index(store.events)
    assert idx is not None and idx.name == ann.INDEX_NAME
    assert ann.trained_rows(store.events) == 400
    assert ann.vector_index(store.memories) is None  # the empty table has none

    store.upsert_events(rows(400, 60, seed=3))
    # new rows before the next optimize: searched by a flat scan beside the index
    new = vector_of(store, "e00433")
    assert store.vector_search("events", new, 5)[0].id == "e00433"
    store.optimize()  # folds them in; 460 rows is no reason to retrain
    store.optimize()
    assert ann.vector_index(store.events) is not None
    assert ann.trained_rows(store.events) == 400
    assert builds(caplog) == ["built"]
    assert store.events.index_stats(ann.INDEX_NAME).num_unindexed_rows == 0

    reopened = store_at(tmp_path / "store")
    for target in ("e00007", "e00250", "e00433"):
        q = vector_of(reopened, target)
        hits = reopened.vector_search("events", q, 10)
        assert hits[0].id == target and hits[0].score > 0.999
        # the filter holds: only bob's rows, and bob's nearest row is the query's own
        bob = reopened.vector_search("events", q, 10, where="user = 'bob'")
        assert bob and all(h.user == "bob" for h in bob)
        assert (bob[0].id == target) == (int(target[1:]) % 2 == 1)
        alice = reopened.vector_search("events", q, 10, where="user = 'alice'")
        assert alice and all(h.user == "alice" for h in alice)
        assert (alice[0].id == target) == (int(target[1:]) % 2 == 0)


def test_index_retrained_once_the_table_has_grown_fourfold(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="daemon.store.ann")
    store = store_at(tmp_path / "store")
    store.upsert_events(rows(0, 300, seed=4))
    store.optimize()
    first = ann.vector_index(store.events)
    assert first is not None and ann.trained_rows(store.events) == 300
    store.upsert_events(rows(300, 600, seed=5))
    store.optimize()  # 900 rows: kept (folded in, not retrained)
    assert ann.trained_rows(store.events) == 300 and builds(caplog) == ["built"]
    store.upsert_events(rows(900, 300, seed=6))
    store.optimize()  # 1,200 = 4 x 300: retrained for its size
    assert ann.trained_rows(store.events) == 1200 and builds(caplog) == ["built", "rebuilt"]
    assert len([i for i in store.events.list_indices() if "vector" in i.columns]) == 1
    q = vector_of(store, "e01100")
    assert store.vector_search("events", q, 3)[0].id == "e01100"


def test_two_stores_deciding_at_once_end_with_one_index(tmp_path: Path) -> None:
    path = tmp_path / "store"
    first = store_at(path)
    first.upsert_events(rows(0, 400, seed=7))
    second = store_at(path)
    assert ann.vector_index(first.events) is None and ann.vector_index(second.events) is None
    start = threading.Barrier(2)
    errors: list[BaseException] = []
    results: list[str] = []

    def decide(store: Store) -> None:
        try:
            start.wait()
            results.append(ann.maintain(store.events, 300, store.location))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=decide, args=(s,)) for s in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert sorted(results) in (["built", "found"], ["built", "built"])
    for store in (first, second, store_at(path)):
        store.events.checkout_latest()
        vector = [i for i in store.events.list_indices() if "vector" in i.columns]
        assert len(vector) == 1
    # and an optimize afterwards in either keeps that one index
    second.optimize()
    first.optimize()
    third = store_at(path)
    assert len([i for i in third.events.list_indices() if "vector" in i.columns]) == 1
    assert third.vector_search("events", vector_of(third, "e00123"), 3)[0].id == "e00123"


def partitions_and_compared(table: Any, vector: list[float]) -> tuple[int, float]:
    """(partitions the index has, rows compared) for a search probing one partition,
    read from LanceDB's own plan metrics."""
    plan = table.search(vector).distance_type("cosine").nprobes(1).limit(5).analyze_plan()
    ranked = re.search(r"partitions_ranked=(\d+)", plan)
    compared = re.search(r"index_comparisons=([\d.]+)( K)?", plan)
    assert ranked and compared, plan
    return int(ranked.group(1)), float(compared.group(1)) * (1000 if compared.group(2) else 1)


def test_partitions_survive_optimize(tmp_path: Path) -> None:
    # LanceDB's optimize merges an index given only a partition count back to its own
    # default size (a few partitions at 100k rows: every search compared every row);
    # memoryd gives a partition size, which optimize keeps.
    store = store_at(tmp_path / "store")
    store.upsert_events(rows(0, 1600, seed=8))
    store.optimize()
    assert ann.current_layout(store.events)
    built, compared = partitions_and_compared(store.events, vector_of(store, "e00010"))
    assert built >= 30 and compared < 200  # ~sqrt(1600) = 40 partitions of ~40 rows
    store.upsert_events(rows(1600, 200, seed=9))
    store.optimize()
    store.optimize()
    kept, compared = partitions_and_compared(store.events, vector_of(store, "e01700"))
    assert kept >= built * 0.8 and compared < 200
    assert ann.trained_rows(store.events) == 1600  # folded in, not retrained
    assert store.vector_search("events", vector_of(store, "e01700"), 3)[0].id == "e01700"


def test_an_index_of_the_old_layout_is_rebuilt_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from lancedb.index import IvfSq

    caplog.set_level(logging.INFO, logger="daemon.store.ann")
    store = store_at(tmp_path / "store")
    store.upsert_events(rows(0, 1600, seed=10))
    # what memoryd built before: a partition count, its rows noted, no layout key
    store.events.create_index("vector", config=IvfSq(distance_type="cosine",
                                                     num_partitions=40), name=ann.INDEX_NAME)
    store.events.update_field_metadata({"path": "vector", "metadata": {ann.ROWS_KEY: "1600"}})
    store.events.optimize()
    merged, _ = partitions_and_compared(store.events, vector_of(store, "e00010"))
    assert not ann.current_layout(store.events)
    store.optimize()  # memoryd's optimize: rebuilt with a partition size
    assert builds(caplog) == ["rebuilt"] and ann.current_layout(store.events)
    store.optimize()
    assert builds(caplog) == ["rebuilt"]  # once
    now, compared = partitions_and_compared(store.events, vector_of(store, "e00010"))
    assert now >= 30 and now > merged and compared < 200
