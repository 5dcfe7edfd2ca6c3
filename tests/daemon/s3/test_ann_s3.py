"""Two daemons' stores on one real SeaweedFS bucket both deciding to build the vector
index at once: one index, no error, and both search it."""

from __future__ import annotations

import threading
from pathlib import Path

from daemon.store import ann
from daemon.store.lance import Store, open_store
from tests.daemon.s3.conftest import Weed, write_config
from tests.daemon.store.test_ann import DIMS, rows, vector_of


def test_two_daemons_on_a_bucket_build_one_vector_index(
        tmp_path: Path, models_dir: Path, s3: Weed) -> None:
    def store(name: str) -> Store:
        cfg = write_config(tmp_path / f"{name}.toml", tmp_path / name, models_dir,
                           store=s3.store_section("ann", optimize_rows=10**9),
                           search={"ann_min_rows": 300})
        return open_store(cfg, DIMS, "test-vectors")

    first, second = store("a"), store("b")
    assert first.remote and first.ann_min_rows == 300
    first.upsert_events(rows(0, 200, seed=11))
    second.upsert_events(rows(200, 200, seed=12))
    assert ann.vector_index(first.events) is None and ann.vector_index(second.events) is None
    start = threading.Barrier(2)
    errors: list[BaseException] = []
    done: list[str] = []

    def decide(s: Store) -> None:
        try:
            start.wait()  # each finds 400 rows and no index: both decide to build it
            done.append(ann.maintain(s.events, s.ann_min_rows, s.location))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=decide, args=(s,)) for s in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert errors == [] and "built" in done and len(done) == 2
    first.optimize()  # the optimize path afterwards keeps that one index
    second.optimize()
    third = store("c")
    vector = [i for i in third.events.list_indices() if "vector" in i.columns]
    assert len(vector) == 1 and vector[0].name == ann.INDEX_NAME
    assert ann.trained_rows(third.events) == 400
    for s in (first, second, third):
        assert s.vector_search("events", vector_of(s, "e00321"), 3)[0].id == "e00321"
        bob = s.vector_search("events", vector_of(s, "e00120"), 5, where="user = 'bob'")
        assert bob and all(h.user == "bob" for h in bob) and bob[0].id != "e00120"
