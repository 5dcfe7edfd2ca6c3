"""What one vector search at 100k memories costs at its floor, and where: memoryd's search
beside an in-memory index of the same vectors and beside LanceDB's cheapest read of the
hits, interleaved query by query in one run.

Issue 17 asks for vector p50 <= 5 ms at 100k (Chroma, which keeps its HNSW index in
memory, answers in ~3.5 ms). This measures whether a resident index in the reader (as
Chroma has) would get memoryd there:

- `memoryd`: `Store.vector_search` (memoryd's IVF_SQ index, a hit's columns), as served;
- `lancedb ids`: the same index search returning ids only;
- `numpy ids`: an in-memory IVF of the same vectors (int8 codes, ~sqrt(rows) k-means
  partitions, the same 20 probed; what a resident index in the reader would hold,
  38 MB at 100k) ranking by its codes alone: ids, no LanceDB call;
- `take 10`: LanceDB's `take_row_ids` of 10 known rows' hit columns: the least any
  design pays that keeps the rows in LanceDB and returns them as hits;
- `numpy + take`: the two together, i.e. a resident index's whole search;
- `hybrid`: `hybrid_search` (k 10; its process CPU time too), and its two legs on this
  table alone: the vector search and the full-text search at depth `search.DEPTH`.

Rows and queries: those of `search_vs_chroma.py` (2,000 real all-MiniLM-L6-v2
embeddings, larger tables derived with seeded noise, 40 queries). Recall@10 against the
exact top 10 (numpy over all vectors).

Run:  PY bench/search_floor.py [--rows 100000] [--repeat 3] [--tmp DIR]
"""

from __future__ import annotations

import os

# numpy's BLAS threads spin after each product and would take a core from LanceDB's
# queries timed next to it; the in-memory index's products are small: one thread
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import Contention, machine, write_result
from bench.search_latency import QUERIES, pct
from bench.search_vs_chroma import base_rows, build_memoryd, exact_top, write_rows
from daemon.recall import search
from daemon.store import ann
from daemon.store.hitrows import hit_columns

K = 10
KMEANS_SAMPLE = 20_000


def unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


class NumpyIvf:
    """The table's vectors in memory: int8 codes in k-means partitions, row ids beside."""

    def __init__(self, table: Any) -> None:
        data = table.search().select(["vector"]).with_row_id(True).limit(None).to_arrow()
        vecs = unit(data["vector"].combine_chunks().flatten().to_numpy()
                    .reshape(data.num_rows, -1).astype(np.float32))
        self.scale = (np.abs(vecs).max(axis=0) / 127).astype(np.float32)
        rng = np.random.default_rng(0)
        sample = vecs[rng.choice(len(vecs), min(len(vecs), KMEANS_SAMPLE), replace=False)]
        cents = sample[rng.choice(len(sample), ann.partitions(len(vecs)), replace=False)]
        for _ in range(8):  # spherical k-means on the sample
            assign = np.argmax(sample @ cents.T, axis=1)
            sums = np.zeros_like(cents)
            np.add.at(sums, assign, sample)
            sums[~sums.any(axis=1)] = cents[~sums.any(axis=1)]
            cents = unit(sums)
        assign = np.concatenate([np.argmax(vecs[s:s + 16384] @ cents.T, axis=1)
                                 for s in range(0, len(vecs), 16384)])
        order = np.argsort(assign, kind="stable")
        self.centroids = cents
        self.bounds = np.asarray(np.searchsorted(assign[order], np.arange(len(cents) + 1)))
        self.codes = np.rint(vecs[order] / self.scale).astype(np.int8)
        self.rowids = data["_rowid"].to_numpy()[order]

    def top(self, query: np.ndarray, k: int) -> np.ndarray:
        q = unit(query.astype(np.float32))
        near = np.argpartition(-(self.centroids @ q), ann.NPROBES - 1)[:ann.NPROBES]
        idx = np.concatenate([np.arange(self.bounds[p], self.bounds[p + 1]) for p in near])
        scores = self.codes[idx].astype(np.float32) @ (q * self.scale)
        best = np.argpartition(-scores, k - 1)[:k]
        return self.rowids[idx[best[np.argsort(-scores[best])]]]


def timed(fn: Callable[[], Any], into: list[float]) -> Any:
    began = time.perf_counter()
    out = fn()
    into.append((time.perf_counter() - began) * 1000)
    return out


def measure(store: Any, ivf: NumpyIvf, qvecs: np.ndarray, truth: list[set[str]],
            repeat: int) -> dict[str, dict[str, float]]:
    table = store.memories
    columns = hit_columns("memories", table.schema.names)
    times: dict[str, list[float]] = {n: [] for n in
                                     ("memoryd", "lancedb ids", "numpy ids", "take 10",
                                      "numpy + take", "hybrid", "hybrid's vector leg",
                                      "hybrid's text leg")}
    cpu: list[float] = []  # process CPU time of each hybrid search (both cores count)
    recall: dict[str, list[float]] = {"memoryd": [], "numpy + take": []}

    def take(rowids: np.ndarray) -> Any:
        return table.take_row_ids([int(i) for i in rowids]).select(columns).to_arrow()

    for rnd in range(repeat + 1):  # round 0 warms up
        for i, q in enumerate(qvecs):
            sink: dict[str, list[float]] = times if rnd else {n: [] for n in times}
            hits = timed(lambda q=q: store.vector_search("memories", [float(x) for x in q],
                                                         K), sink["memoryd"])
            timed(lambda q=q: ann.tuned(table.search(q), K).select(["id"]).limit(K)
                  .to_arrow(), sink["lancedb ids"])
            ids = timed(lambda q=q: ivf.top(q, K), sink["numpy ids"])
            timed(lambda ids=ids: take(ids), sink["take 10"])
            rows = timed(lambda q=q: take(ivf.top(q, K)), sink["numpy + take"])
            query, vec = QUERIES[i % len(QUERIES)], [float(x) for x in q]
            began = time.process_time()
            timed(lambda query=query, vec=vec: search.hybrid_search(store, query, vec, K),
                  sink["hybrid"])
            if rnd:
                cpu.append((time.process_time() - began) * 1000)
            timed(lambda vec=vec: store.vector_search("memories", vec, search.DEPTH),
                  sink["hybrid's vector leg"])
            timed(lambda query=query: store.text_search("memories", search.fts_query(query),
                                                            search.DEPTH),
                  sink["hybrid's text leg"])
            if rnd == 1:
                recall["memoryd"].append(len({h.id for h in hits} & truth[i]) / K)
                recall["numpy + take"].append(len(set(rows["id"].to_pylist()) & truth[i]) / K)
    out = {n: {"p50_ms": round(statistics.median(t), 2), "p95_ms": round(pct(t, 0.95), 2)}
           for n, t in times.items()}
    for n, r in recall.items():
        out[n]["recall_at_10"] = round(float(np.mean(r)), 3)
    out["hybrid"]["cpu_p50_ms"] = round(statistics.median(cpu), 2)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tmp", type=Path, default=None)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="search-floor-", dir=a.tmp))
    try:
        base, bvecs, qvecs, _ = base_rows()
        data = work / "data"
        data.mkdir()
        write_rows(data, a.rows, base, bvecs)
        store = build_memoryd(work / "store", data)
        began = time.monotonic()
        ann.build(store.memories, a.rows, str(work / "store"), replace=True)
        store.optimize()  # as the daemon does after building: partitions kept
        index_s = time.monotonic() - began
        began = time.monotonic()
        ivf = NumpyIvf(store.memories)
        numpy_s = time.monotonic() - began
        truth = exact_top(data, qvecs)
        with Contention() as load:
            result = measure(store, ivf, qvecs, truth, a.repeat)
        print(load.line())
        for name, r in result.items():
            print(f"{name:>14}: p50 {r['p50_ms']:6.2f} ms  p95 {r['p95_ms']:6.2f} ms"
                  + (f"  recall@10 {r['recall_at_10']:.3f}" if "recall_at_10" in r else "")
                  + (f"  CPU p50 {r['cpu_p50_ms']:.2f} ms" if "cpu_p50_ms" in r else ""))
        print(f"IVF_SQ build {index_s:.1f} s; numpy IVF build {numpy_s:.1f} s, "
              f"{ivf.codes.nbytes / 2**20:.0f} MB of codes")
        write_result("search_floor", {
            "machine": machine(), "contention": load.summary(), "rows": a.rows, "k": K,
            "repeat": a.repeat, "queries": len(qvecs), "ivf_sq_build_s": round(index_s, 1),
            "numpy_ivf_build_s": round(numpy_s, 1),
            "numpy_ivf_mb": round(ivf.codes.nbytes / 2**20, 1), "searches": result})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
