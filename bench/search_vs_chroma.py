"""Search side by side: memoryd's store against Chroma, same memories, same embeddings,
same queries, in one run; and memoryd alone at 1M memories, with and without an ANN index.

Rows: the 2,000 distinct synthetic memory texts of `search_latency.py`, embedded for real
once with memoryd's bundled all-MiniLM-L6-v2 (cached in ~/.cache/memoryd/bench-search);
larger tables reuse those 2,000 real embeddings, each copy nudged by seeded noise (sigma
0.02, renormalized), while every row's text stays unique. The rows of each size are
written once to a data folder (vectors.npy + docs.jsonl) that both stores load, so both
hold byte-identical vectors and documents.

memoryd: `Store` as the daemon makes it (full-text index on `doc`, vectors by flat scan),
filled with `memories.add` in 50k-row batches then `Store.optimize()`; timed:
`hybrid_search`, `Store.vector_search`, `Store.text_search` with the whole query, and
`Store.text_search` with the query's keyword (the like-for-like of Chroma's `$contains`).
Chroma: chromadb in its own venv (bench/.venvs/chroma, made by this script), a
`PersistentClient` collection with cosine HNSW (Chroma always builds one), fed the same
rows; timed in its own process (bench/chroma_side.py) around the Chroma call alone:
`query` (vector), `get(where_document={"$contains": keyword})` (Chroma's full-text: a
substring filter, unranked), and `query` + that filter. The parent interleaves every
query across both stores, REPEAT rounds after a warm-up, so drift on the shared box hits
each alike. Recall@10 of each vector search is scored against the exact top 10 (numpy).

memoryd's store is built with its vector index off (flat scan, exact); with --ann it is
measured again after building the index memoryd builds past `[search] ann_min_rows`
(daemon/store/ann.py: IVF_SQ, searched with its nprobes and refine; Chroma again beside it). With --chroma-deadline S,
Chroma's build stops after S seconds (its rate and projected time are reported and it is
not measured at that size).

--refine F adds the ANN search re-ranked on full vectors (LanceDB's refine_factor F);
--build-only measures memoryd's build time and disk size alone.

Run:  /root/.local/share/memoryd/venv/bin/python bench/search_vs_chroma.py \
          [--sizes 10000 100000] [--ann] [--refine 10] [--no-chroma] [--chroma-deadline 1800]
          [--repeat 3] [--warmup 40] [--build-only] [--tmp DIR] [--name search_vs_chroma]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import Contention, machine, write_result  # noqa: E402
from bench.search_latency import DISTINCT, QUERIES, pct, row_text  # noqa: E402
from daemon.recall.search import hybrid_search  # noqa: E402
from daemon.store import ann  # noqa: E402
from daemon.store.lance import Store  # noqa: E402
from daemon.store.schema import TS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHROMA_VENV = ROOT / "bench" / ".venvs" / "chroma"
CHROMA_PINS = ["chromadb==1.5.9"]
CACHE = Path.home() / ".cache" / "memoryd" / "bench-search"
DIMS = 384
REPEAT = 3
K = 10
T0 = np.datetime64("2026-01-01T00:00:00", "us")
STOP = {"what", "which", "where", "when", "how", "did", "does", "the", "for", "and", "about",
        "who", "why", "much", "say", "last", "week", "holds", "read", "set", "is", "on", "of",
        "in", "to", "a", "i", "use", "per", "open", "file", "page", "changed", "change"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def keyword(query: str) -> str:
    """The query's most specific word (longest non-question word): what a user would
    type into a substring filter."""
    words = [w for w in re.findall(r"[a-z0-9][a-z0-9.-]*", query.lower()) if w not in STOP]
    return max(reversed(words), key=len)


def base_rows() -> tuple[list[tuple[str, str, str]], np.ndarray, np.ndarray, str]:
    """The 2,000 distinct texts and their real embeddings, plus the queries' embeddings
    (computed once with the bundled embedder and cached by content hash)."""
    rng = random.Random(7)
    base = [row_text(i, rng) for i in range(DISTINCT)]
    key = hashlib.sha256(json.dumps([base, QUERIES]).encode()).hexdigest()[:16]
    cached = CACHE / f"base-{key}.npz"
    if cached.exists():
        z = np.load(cached)
        return base, z["vecs"], z["qvecs"], f"cached {cached.name}"
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                      TOKENIZERS_PARALLELISM="false", TRANSFORMERS_VERBOSITY="error")
    from models.assets import embedder_path
    from models.sentence_tf import SentenceTransformerBackend

    emb = SentenceTransformerBackend(embedder_path("all-minilm-l6-v2"), name="all-minilm-l6-v2",
                                     dimensions=DIMS, threads=2, idle_seconds=0)
    t = time.perf_counter()
    vecs = np.asarray(emb.embed([f"{ti}\n{tx}" for ti, tx, _ in base]), dtype=np.float32)
    qvecs = np.asarray(emb.embed(QUERIES), dtype=np.float32)
    took = time.perf_counter() - t
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(cached, vecs=vecs, qvecs=qvecs)
    return base, vecs, qvecs, f"embedded for real in {took:.0f} s"


def write_rows(dest: Path, n: int, base: list[tuple[str, str, str]],
               base_v: np.ndarray) -> None:
    """Rows 0..n-1 into dest/vectors.npy and dest/docs.jsonl (the same for both stores)."""
    dest.mkdir(parents=True, exist_ok=True)
    rng, nrng = random.Random(n), np.random.default_rng(n)
    vecs = np.lib.format.open_memmap(dest / "vectors.npy", mode="w+", dtype=np.float32,
                                     shape=(n, DIMS))
    with (dest / "docs.jsonl").open("w") as out:
        for start in range(0, n, 100_000):
            stop = min(n, start + 100_000)
            idx = np.arange(start, stop)
            v = base_v[idx % len(base)].copy()
            noisy = idx >= len(base)
            v[noisy] += nrng.normal(0, 0.02, (int(noisy.sum()), DIMS)).astype(np.float32)
            v[noisy] /= np.linalg.norm(v[noisy], axis=1, keepdims=True)
            vecs[start:stop] = v
            for i in range(start, stop):
                title, text, project = base[i] if i < len(base) else row_text(i, rng)
                out.write(json.dumps({
                    "id": f"m{i:07d}", "title": title, "text": text, "project": project,
                    "source": ("files", "shell", "browser")[i % 3],
                    "doc": f"{title}\n{text}", "ts": str(T0 + np.timedelta64(7 * i, "m"))},
                ) + "\n")
    vecs.flush()


def build_memoryd(path: Path, data: Path, cache_mb: int = 0) -> Store:
    """The store, flat (--ann adds the index); `cache_mb` bounds LanceDB's caches as
    `[store] cache_mb` does in the daemon (0: LanceDB's defaults)."""
    store = Store(path, DIMS, "all-minilm-l6-v2", ann_min_rows=0, cache_mb=cache_mb)
    schema = store.memories.schema
    vecs = np.load(data / "vectors.npy", mmap_mode="r")
    batch: list[dict[str, Any]] = []

    def flush(start: int) -> None:
        m = len(batch)
        ts = np.array([d["ts"] for d in batch], dtype="datetime64[us]")
        cols: dict[str, pa.Array] = {
            "id": pa.array([d["id"] for d in batch]),
            "ts": pa.array(ts).cast(TS), "ts_end": pa.array(ts + np.timedelta64(5, "m")).cast(TS),
            "level": pa.array(["chunk"] * m), "source": pa.array([d["source"] for d in batch]),
            "title": pa.array([d["title"] for d in batch]),
            "text": pa.array([d["text"] for d in batch]),
            "model": pa.array(["bench"] * m), "created": pa.array(ts).cast(TS),
            "doc": pa.array([d["doc"] for d in batch]),
            "vector": pa.FixedSizeListArray.from_arrays(
                pa.array(np.ascontiguousarray(vecs[start:start + m]).ravel()), DIMS),
            "project": pa.array([d["project"] for d in batch]),
        }
        arrays = [cols[f.name] if f.name in cols  # the rest: empty lists and strings
                  else pa.array([[] if pa.types.is_list(f.type) else ""] * m, type=f.type)
                  for f in schema]
        store.memories.add(pa.Table.from_arrays(arrays, schema=schema))
        batch.clear()

    start = 0
    with (data / "docs.jsonl").open() as f:
        for i, line in enumerate(f):
            batch.append(json.loads(line))
            if len(batch) == 50_000:
                flush(start)
                start = i + 1
    if batch:
        flush(start)
    store.optimize()
    return store


def du_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20, 1)


class Chroma:
    """Chroma in its own venv and process, driven over a pipe."""

    def __init__(self) -> None:
        py = CHROMA_VENV / "bin" / "python"
        if not py.exists():
            log(f"making Chroma's own venv at {CHROMA_VENV} (once)")
            subprocess.run([sys.executable, "-m", "venv", str(CHROMA_VENV)], check=True)
            subprocess.run([str(CHROMA_VENV / "bin" / "pip"), "install", "-q", *CHROMA_PINS],
                           check=True)
        self.proc = subprocess.Popen(
            [str(py), str(ROOT / "bench" / "chroma_side.py")], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})

    def call(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"chroma_side.py exited ({self.proc.wait()})")
        return json.loads(line)  # type: ignore[no-any-return]

    def close(self) -> None:
        try:
            self.call(op="quit")
        except (RuntimeError, BrokenPipeError, json.JSONDecodeError):
            pass
        self.proc.wait(60)


def exact_top(data: Path, qvecs: np.ndarray) -> list[set[str]]:
    vecs = np.load(data / "vectors.npy", mmap_mode="r")
    sims = np.zeros((len(qvecs), 0), dtype=np.float32)
    idx = np.zeros((len(qvecs), 0), dtype=np.int64)
    for start in range(0, len(vecs), 200_000):  # in slices: 1M x 384 is 1.5 GB
        s = np.asarray(vecs[start:start + 200_000]) @ qvecs.T
        top = np.argpartition(-s, K, axis=0)[:K].T + start
        sims = np.concatenate([sims, np.take_along_axis(s.T, top - start, axis=1)], axis=1)
        idx = np.concatenate([idx, top], axis=1)
    best = np.take_along_axis(idx, np.argsort(-sims, axis=1)[:, :K], axis=1)
    return [{f"m{i:07d}" for i in row} for row in best]


def measure(store: Store, chroma: Chroma | None, qvecs: np.ndarray, truth: list[set[str]],
            repeat: int = REPEAT, warmup: int = len(QUERIES),
            refine: int = 0) -> dict[str, dict[str, float]]:
    kws = [keyword(q) for q in QUERIES]

    def mem(fn: Any) -> Any:
        def run(q: str, v: list[float], kw: str) -> tuple[float, list[str]]:
            t = time.perf_counter()
            hits = fn(q, v, kw)
            return (time.perf_counter() - t) * 1000, [getattr(h, "id", None) or h["id"]
                                                      for h in hits]
        return run

    def chr_(op: str) -> Any:
        def run(q: str, v: list[float], kw: str) -> tuple[float, list[str]]:
            assert chroma is not None
            r = chroma.call(op=op, v=v, term=kw, k=K)
            return r["ms"], r["ids"]
        return run

    kinds: dict[str, Any] = {
        "memoryd hybrid": mem(lambda q, v, kw: hybrid_search(store, q, v, K)),
        "memoryd vector": mem(lambda q, v, kw: store.vector_search("memories", v, K)),
        "memoryd full text (query)": mem(lambda q, v, kw: store.text_search("memories", q, K)),
        "memoryd full text (keyword)": mem(lambda q, v, kw: store.text_search("memories", kw, K)),
    }
    if refine:  # what re-ranking the ANN candidates with the full vectors buys and costs
        kinds["memoryd vector, ANN + refine"] = mem(lambda q, v, kw: store.memories.search(
            v, vector_column_name="vector").distance_type("cosine").refine_factor(refine)
            .limit(K).select(["id"]).to_list())
    if chroma is not None:
        kinds |= {"chroma vector": chr_("vector"), "chroma $contains (keyword)": chr_("contains"),
                  "chroma vector + $contains": chr_("vector_contains")}
    times: dict[str, list[float]] = {k: [] for k in kinds}
    recall: dict[str, list[float]] = {"memoryd vector": [], "chroma vector": [],
                                      "memoryd vector, ANN + refine": []}
    found: dict[str, list[int]] = {k: [] for k in kinds}
    qv = [v.tolist() for v in qvecs]
    for q, v, kw in list(zip(QUERIES, qv, kws, strict=True))[:warmup]:
        for fn in kinds.values():
            fn(q, v, kw)
    for _ in range(repeat):
        for qi, (q, v, kw) in enumerate(zip(QUERIES, qv, kws, strict=True)):
            for name, fn in kinds.items():
                ms, ids = fn(q, v, kw)
                times[name].append(ms)
                found[name].append(len(ids))
                if name in recall:
                    recall[name].append(len(truth[qi] & set(ids)) / K)
    out = {k: {"p50_ms": round(statistics.median(v), 1), "p95_ms": round(pct(v, 0.95), 1),
               "n": len(v), "mean_hits": round(statistics.mean(found[k]), 1)}
           for k, v in times.items()}
    for k, r in recall.items():
        if k in out:
            out[k]["recall_at_10"] = round(statistics.mean(r), 3)
    return out


def show(n: int, label: str, r: dict[str, dict[str, float]]) -> None:
    log(f"{n:>8} {label}:")
    for k, v in r.items():
        extra = f", recall@10 {v['recall_at_10']}" if "recall_at_10" in v else ""
        print(f"           {k:30s} p50 {v['p50_ms']:8.1f} ms  p95 {v['p95_ms']:8.1f} ms"
              f"  hits {v['mean_hits']}{extra}", flush=True)


def save(a: argparse.Namespace, load: Contention, how: str, results: dict[str, Any]) -> None:
    """Write what is measured so far (a 1M run is long: keep each step as it comes)."""
    write_result(a.name, {"machine": machine(), "contention": load.summary(),
                          "base_embeddings": how, "results": results,
                          "queries": len(QUERIES), "repeat": a.repeat, "warmup": a.warmup,
                          "k": K, "keywords": [keyword(q) for q in QUERIES],
                          "chroma": CHROMA_PINS[0]})


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--ann", action="store_true",
                    help="also measure memoryd with its own vector index (IVF_SQ)")
    ap.add_argument("--no-chroma", action="store_true", help="memoryd only")
    ap.add_argument("--chroma-deadline", type=float, default=0,
                    help="stop Chroma's build after this many seconds (0: no limit)")
    ap.add_argument("--repeat", type=int, default=REPEAT, help="timed rounds of all queries")
    ap.add_argument("--warmup", type=int, default=len(QUERIES), help="warm-up queries")
    ap.add_argument("--refine", type=int, default=0, metavar="F",
                    help="with --ann, also time the ANN search re-ranked by refine_factor F")
    ap.add_argument("--build-only", action="store_true",
                    help="memoryd's build time and disk size only (no Chroma, no queries)")
    ap.add_argument("--tmp", default=None, help="where the stores go (default: a temp dir)")
    ap.add_argument("--cache-mb", type=int, default=0,
                    help="LanceDB's caches as the daemon's [store] cache_mb (its default 160);"
                         " 0: LanceDB's own defaults, as runs before session 27")
    ap.add_argument("--name", default="search_vs_chroma", help="results file name")
    a = ap.parse_args()
    base, base_v, qvecs, how = base_rows()
    log(f"base embeddings: {how}")
    results: dict[str, Any] = {}
    with Contention() as load, tempfile.TemporaryDirectory(dir=a.tmp) as tmp:
        for n in a.sizes:
            res: dict[str, Any] = {}
            results[str(n)] = res
            data = Path(tmp) / f"rows{n}"
            t = time.perf_counter()
            write_rows(data, n, base, base_v)
            res["rows_written_s"] = round(time.perf_counter() - t, 1)
            truth = exact_top(data, qvecs)
            log(f"{n}: rows written in {res['rows_written_s']} s")
            t = time.perf_counter()
            store = build_memoryd(Path(tmp) / f"memoryd{n}", data, a.cache_mb)
            res["memoryd_build_s"] = round(time.perf_counter() - t, 1)
            res["memoryd_disk_mb"] = du_mb(Path(tmp) / f"memoryd{n}")
            # Lance keeps the pre-compaction fragments (7 days by default): also the size
            # of the live version alone, as the store is once those are cleaned up.
            store.memories.optimize(cleanup_older_than=timedelta(0))
            res["memoryd_disk_mb_cleaned"] = du_mb(Path(tmp) / f"memoryd{n}")
            log(f"{n}: memoryd store built in {res['memoryd_build_s']} s, "
                f"{res['memoryd_disk_mb']} MB on disk ({res['memoryd_disk_mb_cleaned']} MB "
                "once old versions are cleaned up)")
            if a.build_only:
                save(a, load, how, results)
                continue
            chroma = None
            if not a.no_chroma:
                chroma = Chroma()
                b = chroma.call(op="build", path=str(Path(tmp) / f"chroma{n}"), data=str(data),
                                deadline_s=a.chroma_deadline or None)
                b["disk_mb"] = du_mb(Path(tmp) / f"chroma{n}")
                res["chroma_build"] = b
                log(f"{n}: chroma built {b['rows']} rows in {b['build_s']} s "
                    f"({'complete' if b['complete'] else 'STOPPED at the deadline'}), "
                    f"{b['disk_mb']} MB on disk, RSS {b['rss_mb']} MB")
                if not b["complete"]:
                    b["projected_full_build_s"] = round(b["build_s"] * n / max(1, b["rows"]))
                    chroma.close()
                    chroma = None
            res["flat"] = measure(store, chroma, qvecs, truth, a.repeat, a.warmup)
            show(n, "memoryd as built (flat vectors)", res["flat"])
            save(a, load, how, results)
            if a.ann:
                t = time.perf_counter()
                ann.build(store.memories, n, store.location, replace=False)
                res["ann_index_build_s"] = round(time.perf_counter() - t, 1)
                store.memories.optimize(cleanup_older_than=timedelta(0))
                res["memoryd_disk_mb_with_ann"] = du_mb(Path(tmp) / f"memoryd{n}")
                log(f"{n}: memoryd's IVF_SQ index built in {res['ann_index_build_s']} s")
                res["ann"] = measure(store, chroma, qvecs, truth, a.repeat, a.warmup,
                                     a.refine)
                show(n, "memoryd with its IVF_SQ index", res["ann"])
            if chroma is not None:
                res["chroma_rss_mb_after"] = chroma.call(op="rss")["rss_mb"]
                chroma.close()
            del store
            shutil.rmtree(data, ignore_errors=True)
            save(a, load, how, results)
    print(load.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
