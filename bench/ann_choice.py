"""Which vector index memoryd builds, with which parameters, and past how many rows:
flat-scan p50 by table size, then for each index type its build time, query p50/p95
and recall@10 against exact search, at each search setting (nprobes, refine_factor).

Rows: the search benchmarks' rows (bench/search_vs_chroma.py `base_rows`): 2,000 real
all-MiniLM-L6-v2 embeddings of distinct memory texts, larger tables deriving the rest
from them with seeded noise (sigma 0.02, renormalized): tight clusters of near-copies,
a hard case for quantized indexes. The table holds `id`, `user` (4 owners) and `vector`
only: the vector search reads the vector column and then the k rows it returns, so the
other columns of the real `memories` table change little here. 40 queries (embedded
once), one warm-up pass, then `--repeat` rounds; k = 10; cosine. "filtered" rows search
with `user = 'u1'` as a prefilter (a quarter of the rows) against the exact top 10 of
that owner's rows. The last config, "memoryd", is the index daemon/store/ann.py builds
searched as it searches (`ann.tuned`: nprobes 20, refine_factor 10 at k = 10).

Run:  $PY bench/ann_choice.py [--flat-sizes 5000 10000 20000 50000] [--sizes 20000 100000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import Contention, machine, write_result
from bench.search_latency import pct
from bench.search_vs_chroma import DIMS, base_rows
from daemon.store import ann

K = 10
# (label, create_index kwargs, search settings [(nprobes, refine_factor), ...])
CONFIGS: list[tuple[str, dict[str, Any], list[tuple[int, int]]]] = [
    ("IVF_PQ sub=48", {"index_type": "IVF_PQ", "num_sub_vectors": 48},
     [(20, 10), (20, 50), (40, 50)]),
    ("IVF_SQ", {"index_type": "IVF_SQ"}, [(5, 10), (10, 10), (20, 10), (20, 30), (40, 30)]),
    ("IVF_FLAT", {"index_type": "IVF_FLAT"}, [(10, 0), (20, 0), (40, 0)]),
    ("IVF_HNSW_SQ m=20 efc=300", {"index_type": "IVF_HNSW_SQ"},
     [(10, 10), (20, 30), (40, 30)]),
    # what memoryd builds (daemon/store/ann.py: index_config) and how it searches (tuned)
    ("memoryd", {}, [(-1, -1)]),
]


def derive(n: int, base_v: np.ndarray) -> np.ndarray:
    """Rows 0..n-1's vectors exactly as search_vs_chroma.write_rows derives them."""
    nrng = np.random.default_rng(n)
    out = np.empty((n, DIMS), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        idx = np.arange(start, stop)
        v = base_v[idx % len(base_v)].copy()
        noisy = idx >= len(base_v)
        v[noisy] += nrng.normal(0, 0.02, (int(noisy.sum()), DIMS)).astype(np.float32)
        v[noisy] /= np.linalg.norm(v[noisy], axis=1, keepdims=True)
        out[start:stop] = v
    return out


def table(db: Any, name: str, vecs: np.ndarray) -> Any:
    n = len(vecs)
    data = pa.table({
        "id": pa.array([f"m{i:07d}" for i in range(n)]),
        "user": pa.array([f"u{i % 4}" for i in range(n)]),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), DIMS)})
    return db.create_table(name, data=data)


def exact(vecs: np.ndarray, qvecs: np.ndarray, mask: np.ndarray | None = None) -> list[set[str]]:
    sims = qvecs @ vecs.T
    if mask is not None:
        sims[:, ~mask] = -9.0
    top = np.argsort(-sims, axis=1)[:, :K]
    return [{f"m{i:07d}" for i in row} for row in top]


def timed(t: Any, qvecs: np.ndarray, truth: list[set[str]], repeat: int,
          nprobes: int = 0, refine: int = 0, where: str | None = None) -> dict[str, float]:
    def one(v: np.ndarray) -> list[str]:
        q = t.search(v, vector_column_name="vector").distance_type("cosine").limit(K)
        if nprobes < 0:
            q = ann.tuned(q, K)
        elif nprobes:
            q = q.nprobes(nprobes)
        if refine > 0:
            q = q.refine_factor(refine)
        if where:
            q = q.where(where, prefilter=True)
        return [r["id"] for r in q.select(["id", "_distance"]).to_list()]

    hits = [one(v) for v in qvecs]  # warm-up, and what recall is measured on
    recall = statistics.mean(len(set(h) & tr) / K for h, tr in zip(hits, truth, strict=True))
    ms: list[float] = []
    for _ in range(repeat):
        for v in qvecs:
            s = time.perf_counter()
            one(v)
            ms.append((time.perf_counter() - s) * 1000)
    return {"p50_ms": round(statistics.median(ms), 1), "p95_ms": round(pct(ms, 0.95), 1),
            "recall10": round(recall, 3)}


def main() -> int:
    import lancedb

    ap = argparse.ArgumentParser()
    ap.add_argument("--flat-sizes", type=int, nargs="*", default=[5000, 10000, 20000, 50000])
    ap.add_argument("--sizes", type=int, nargs="*", default=[20000, 100000])
    ap.add_argument("--types", nargs="*", default=None, help="labels' first words to keep")
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    _, base_v, qvecs, how = base_rows()
    results: dict[str, Any] = {"flat": {}, "indexed": {}}
    with Contention() as load, tempfile.TemporaryDirectory() as tmp:
        db = lancedb.connect(tmp)
        for n in a.flat_sizes:
            vecs = derive(n, base_v)
            r = timed(table(db, f"flat{n}", vecs), qvecs, exact(vecs, qvecs), a.repeat)
            results["flat"][str(n)] = r
            print(f"flat {n:>7}: p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms", flush=True)
        for n in a.sizes:
            vecs = derive(n, base_v)
            truth = exact(vecs, qvecs)
            mine = exact(vecs, qvecs, np.arange(n) % 4 == 1)
            for label, kw, settings in CONFIGS:
                if a.types and label.split()[0] not in a.types:
                    continue
                t = table(db, f"t{n}_{label.split()[0]}", vecs)
                s = time.perf_counter()
                if label == "memoryd":
                    t.create_index("vector", config=ann.index_config(n), name=ann.INDEX_NAME)
                else:
                    t.create_index(metric="cosine", vector_column_name="vector", **kw)
                built = time.perf_counter() - s
                row: dict[str, Any] = {"build_s": round(built, 1), "searches": {}}
                for nprobes, refine in settings:
                    r = timed(t, qvecs, truth, a.repeat, nprobes, refine)
                    f = timed(t, qvecs, mine, 1, nprobes, refine, where="user = 'u1'")
                    row["searches"]["as memoryd searches" if nprobes < 0 else
                                    f"nprobes={nprobes} refine={refine}"] = {
                        **r, "filtered": f}
                    print(f"{n:>7} {label:<26} built {built:6.1f} s  nprobes {nprobes:>3} "
                          f"refine {refine:>3}: p50 {r['p50_ms']:>6} ms p95 {r['p95_ms']:>6} "
                          f"recall@10 {r['recall10']:.3f} | filtered p50 {f['p50_ms']} ms "
                          f"recall@10 {f['recall10']:.3f}", flush=True)
                results["indexed"].setdefault(str(n), {})[label] = row
                db.drop_table(t.name)
    print(load.line())
    write_result("ann_choice", {"machine": machine(), "contention": load.summary(),
                                "rows": f"search_vs_chroma base rows ({how}), derived",
                                "queries": len(qvecs), "repeat": a.repeat, "k": K,
                                "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
