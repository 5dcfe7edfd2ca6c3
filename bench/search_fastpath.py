"""Search at 100k memories before and after issue 17's search fast path, side by side in
one run (the same rows, the same queries, interleaved query by query).

before: the vector index as memoryd built it until now (IVF_SQ given a partition count:
sqrt(rows)), then an optimize, as the daemon's next one does (LanceDB merges those
partitions back to a handful); searches reading every column, a hybrid query's four
searches one after the other.
after: the index as `daemon/store/ann.py` builds it now (a partition size, which optimize
keeps), then the same optimize; searches reading only the columns a hit is made of, the
four searches of a hybrid query side by side (on LanceDB's event loop since session 27:
daemon/store/searches.py; threads before).
The "before" search path is the plain path that tests/daemon/recall/test_search_fast_path.py
checks returns the same hits as the fast one.

Rows and queries: those of `search_vs_chroma.py` (2,000 real all-MiniLM-L6-v2 embeddings,
larger tables derived with seeded noise, each row's text unique; 40 queries embedded
once, outside the timing). Timed: `hybrid_search` (k 10), `Store.vector_search` (k 10,
whole rows) and the index search alone (ids only); recall@10 of the vector searches
against the exact top 10 (numpy). Warm-up, then REPEAT rounds.

Run:  PY bench/search_fastpath.py [--rows 100000] [--repeat 3] [--tmp DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import Future
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import Contention, machine, write_result
from bench.search_latency import QUERIES, pct
from bench.search_vs_chroma import base_rows, build_memoryd, exact_top, write_rows
from daemon.recall import search
from daemon.recall.hits import Hit
from daemon.store import ann
from daemon.store.lance import Store

# the search path as it was (whole rows), the reference the fast path is pinned equal to
from tests.daemon.recall.test_search_fast_path import plain_text, plain_vector

K = 10


class Before(Store):
    """The store with the search path as it was: whole rows, each search done before the
    next one starts (the "soon" methods return finished futures)."""

    def vector_search_soon(self, table: str, vector: list[float], k: int,
                           where: str | None = None) -> Future[list[Hit]]:
        return done(plain_vector(self, table, vector, k, where))

    def text_search_soon(self, table: str, text: str, k: int,
                         where: str | None = None) -> Future[list[Hit]]:
        return done(plain_text(self, table, text, k, where))


def done(hits: list[Hit]) -> Future[list[Hit]]:
    fut: Future[list[Hit]] = Future()
    fut.set_result(hits)
    return fut


def old_index(store: Store, rows: int) -> None:
    from lancedb.index import IvfSq

    store.memories.create_index("vector", config=IvfSq(
        distance_type="cosine", num_partitions=ann.partitions(rows)), name=ann.INDEX_NAME)
    store.memories.update_field_metadata({"path": "vector",
                                          "metadata": {ann.ROWS_KEY: str(rows)}})


def partitions(store: Store, vector: list[float]) -> int:
    import re

    plan = (store.memories.search(vector).distance_type("cosine").nprobes(1).limit(K)
            .analyze_plan())
    found = re.search(r"partitions_ranked=(\d+)", plan)
    return int(found.group(1)) if found else -1


def ids_only(store: Store, v: list[float]) -> list[str]:
    q = ann.tuned(store.memories.search(v, vector_column_name="vector")
                  .distance_type("cosine").limit(K), K)
    return q.select(["id", "_distance"]).to_arrow().column("id").to_pylist()  # type: ignore[no-any-return]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tmp", default=None)
    a = ap.parse_args()
    base, base_v, qvecs, how = base_rows()
    qv = [v.tolist() for v in qvecs]
    out: dict[str, Any] = {"rows": a.rows, "base_embeddings": how}
    with Contention() as load, tempfile.TemporaryDirectory(dir=a.tmp) as tmp:
        data = Path(tmp) / "rows"
        write_rows(data, a.rows, base, base_v)
        truth = exact_top(data, qvecs)
        build_memoryd(Path(tmp) / "after", data).memories.optimize(
            cleanup_older_than=timedelta(0))
        shutil.copytree(Path(tmp) / "after", Path(tmp) / "before")
        after = Store(Path(tmp) / "after", 384, "all-minilm-l6-v2", ann_min_rows=10_000)
        t = time.perf_counter()
        ann.build(after.memories, a.rows, after.location, replace=False)
        out["after_index_build_s"] = round(time.perf_counter() - t, 1)
        before = Before(Path(tmp) / "before", 384, "all-minilm-l6-v2", ann_min_rows=0)
        t = time.perf_counter()
        old_index(before, a.rows)
        out["before_index_build_s"] = round(time.perf_counter() - t, 1)
        for s in (before, after):
            s.optimize()  # as the daemon's next optimize (ann_min_rows 0: no rebuild)
        out["partitions"] = {"before": partitions(before, qv[0]),
                             "after": partitions(after, qv[0])}
        print(f"partitions after an optimize: {out['partitions']}", flush=True)
        kinds = {
            "hybrid": lambda s, q, v: [h.id for h in search.hybrid_search(s, q, v, K)],
            "vector (whole rows)": lambda s, q, v: [h.id for h in s.vector_search_soon(
                "memories", v, K).result()],
            "index search (ids only)": lambda s, q, v: ids_only(s, v),
        }
        sides = {"before": before, "after": after}
        times: dict[str, list[float]] = {f"{n} {k}": [] for n in sides for k in kinds}
        recall: dict[str, list[float]] = {key: [] for key in times if "hybrid" not in key}
        same_hybrid = 0
        for rnd in range(a.repeat + 1):  # round 0: warm-up
            for qi, (q, v) in enumerate(zip(QUERIES, qv, strict=True)):
                got: dict[str, list[str]] = {}
                for kind, fn in kinds.items():
                    for name, s in sides.items():
                        began = time.perf_counter()
                        ids = fn(s, q, v)
                        ms = (time.perf_counter() - began) * 1000
                        key = f"{name} {kind}"
                        got[key] = ids
                        if rnd:
                            times[key].append(ms)
                            if key in recall:
                                recall[key].append(len(truth[qi] & set(ids)) / K)
                same_hybrid += got["before hybrid"] == got["after hybrid"] and rnd == 1
        res = {key: {"p50_ms": round(statistics.median(v), 1),
                     "p95_ms": round(pct(v, 0.95), 1), "n": len(v)}
               for key, v in times.items()}
        for key, r in recall.items():
            res[key]["recall_at_10"] = round(statistics.mean(r), 3)
        out["results"] = res
        out["hybrid_same_ids_before_after"] = f"{same_hybrid}/{len(QUERIES)}"
    for key, r in res.items():
        extra = f", recall@10 {r['recall_at_10']}" if "recall_at_10" in r else ""
        print(f"{key:32s} p50 {r['p50_ms']:7.1f} ms  p95 {r['p95_ms']:7.1f} ms{extra}")
    for kind in kinds:
        b, f = res[f"before {kind}"]["p50_ms"], res[f"after {kind}"]["p50_ms"]
        print(f"{kind}: before / after p50 = {b / f:.2f}x")
    print(f"hybrid top 10 ids identical before and after: {out['hybrid_same_ids_before_after']}")
    print(load.line())
    write_result("search_fastpath", {"machine": machine(), "contention": load.summary(),
                                     "repeat": a.repeat, "k": K, **out})
    return 0


if __name__ == "__main__":
    sys.exit(main())
