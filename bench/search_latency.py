"""Search latency: hybrid, vector-only and full-text-only search over the `memories`
table at 10k and 100k rows, p50/p95.

Rows: 2,000 distinct synthetic memory texts (activities, projects, files, URLs, numbers
drawn from word lists; seeded) are embedded for real with the bundled all-MiniLM-L6-v2;
the 100k table reuses those 2,000 real embeddings, each copy nudged by small seeded noise
and renormalized, while every row's text stays unique (its own ids, numbers and dates).
So the vector search scans real-looking 384-d vectors and the full-text index holds
100k distinct documents, without embedding 100k texts on a shared 2-core box.
Queries: 40 natural-language questions, embedded for real once, outside the timing
(embedding one query costs ~10-20 ms and is reported on its own line).
Timed: `hybrid_search` (4 lists: events and memories × vector and full text, fused,
de-duplicated), `Store.vector_search` and `Store.text_search` on `memories`; the store
as memoryd builds it (full-text index, vectors searched by a flat scan: memoryd creates
no ANN index here). Each query runs once as warm-up, then REPEAT times, interleaving the three
kinds so drift on the shared box hits each alike.

The tables are built with the vector index off (`ann_min_rows = 0`: flat scan); with --ann,
each size is measured again after building the vector index memoryd builds past
`[search] ann_min_rows` (daemon/store/ann.py: IVF_SQ, searched with nprobes and refine).

Run:  /root/.local/share/memoryd/venv/bin/python bench/search_latency.py [--sizes 10000 100000] [--ann]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
                  TRANSFORMERS_VERBOSITY="error", TOKENIZERS_PARALLELISM="false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Contention, machine, write_result  # noqa: E402
from daemon.recall.search import hybrid_search  # noqa: E402
from daemon.store import ann  # noqa: E402
from daemon.store.lance import Store  # noqa: E402
from models.assets import embedder_path  # noqa: E402
from models.sentence_tf import SentenceTransformerBackend  # noqa: E402

DISTINCT = 2000
REPEAT = 3
WORDS = {
    "verb": ["refactored", "debugged", "reviewed", "benchmarked", "documented", "deployed",
             "rolled back", "profiled", "tested", "designed", "migrated", "drafted"],
    "thing": ["the ranker", "the billing export", "the login flow", "the sync tunnel",
              "the invoice parser", "the search index", "the onboarding emails", "the CI cache",
              "the pricing page", "the lead scoring model", "the ssh config", "the backup job",
              "the screening questionnaire", "the cost dashboard", "the GPU server",
              "the calendar integration", "the PDF renderer", "the retry policy"],
    "project": ["leadscore", "atlas", "kestrel-site", "recruit-flows", "homelab", "memsync",
                "billing-svc", "docs", "infra", "mobile-app", "data-lake", "crm-bridge"],
    "why": ["because the tests were flaky", "after a customer report", "to cut latency",
            "before the release", "to fix a timezone bug", "since the API changed",
            "to lower the token cost", "for the quarterly review", "after an outage"],
    "ext": ["py", "md", "toml", "yaml", "ts", "sql", "sh", "json"],
    "host": ["docs.lancedb.com", "github.com", "stackoverflow.com", "developer.mozilla.org",
             "docs.python.org", "kubernetes.io", "news.ycombinator.com", "arxiv.org"],
}
QUERIES = [
    "what did I change in the ranker tests", "which port does the GPU server use",
    "how did I fix the timezone bug", "where is the billing export config",
    "what was the retry policy decision", "which docs page about hybrid search did I read",
    "what threshold did I set for lead scoring", "why did the backup job fail",
    "what did I deploy before the release", "how much does the pricing page say",
    "which branch fixed the login flow", "what is open on the onboarding emails",
    "where did I save the PDF renderer output", "what did I benchmark last week",
    "the ssh keepalive option for the sync tunnel", "who reviewed the invoice parser",
    "what changed in the CI cache", "which file holds the search index settings",
    "cost dashboard token spend per model", "screening questionnaire questions",
    "calendar integration oauth scopes", "migrate the data lake tables",
    "crm bridge export dates", "memsync snapshot is empty", "kestrel site tagline",
    "atlas profiling results", "homelab dns change", "mobile app crash on start",
    "infra terraform plan", "docs build warnings", "leadscore v0.9 release notes",
    "billing-svc rollback reason", "recruit flows threshold 0.74", "ranker tie break",
    "search index rebuild time", "onboarding email copy", "pdf fonts missing",
    "retry backoff seconds", "gpu memory limit", "backup retention days",
]


def row_text(i: int, rng: random.Random) -> tuple[str, str, str]:
    """Row i's (title, text, project), with its own identifiers."""
    w = {k: rng.choice(v) for k, v in WORDS.items()}
    title = f"{w['project']}: {w['verb']} {w['thing']}"
    text = (f"{w['verb'].capitalize()} {w['thing']} in {w['project']} {w['why']}. "
            f"Edited src/{w['project']}/mod_{i}.{w['ext']}, read https://{w['host']}/p/{i}, "
            f"ran `make test-{i % 97}` (exit {i % 3}); value {rng.randint(1, 9999) / 100}, "
            f"ticket #{1000 + i}.")
    return title, text, w["project"]


def texts(n: int, rng: random.Random) -> list[tuple[str, str, str]]:
    """n (title, text, project) triples, each with its own identifiers."""
    return [row_text(i, rng) for i in range(n)]


def build(path: Path, n: int, base: list[tuple[str, str, str]], vecs: list[list[float]],
          dims: int, rng: random.Random) -> Store:
    import numpy as np

    store = Store(path, dims, "all-minilm-l6-v2", ann_min_rows=0)  # flat first
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    names = set(store.memories.schema.names)
    batch: list[dict[str, Any]] = []
    base_v = np.asarray(vecs, dtype=np.float32)
    nrng = np.random.default_rng(n)
    for i in range(n):
        j = i % len(base)
        if i < len(base):
            title, text, project = base[j]
            v = base_v[j]
        else:
            title, text, project = texts(1, rng)[0]
            text = text.replace("mod_0", f"mod_{i}").replace("/p/0", f"/p/{i}")
            noise = base_v[j] + nrng.normal(0, 0.02, dims).astype(np.float32)
            v = noise / np.linalg.norm(noise)
        ts = t0 + timedelta(minutes=7 * i)
        row: dict[str, Any] = {
            "id": f"m{i:07d}", "ts": ts, "ts_end": ts + timedelta(minutes=5), "level": "chunk",
            "source": ["files", "shell", "browser"][i % 3], "title": title, "text": text,
            "event_ids": [], "model": "bench", "created": ts, "doc": f"{title}\n{text}",
            "vector": v.tolist(),
        }
        for name in names - set(row):
            row[name] = project if name == "project" else []
        batch.append(row)
        if len(batch) == 5000:
            store.memories.add(batch)
            batch = []
    if batch:
        store.memories.add(batch)
    store.optimize()
    return store


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def measure(store: Store, qvecs: list[list[float]]) -> dict[str, dict[str, float]]:
    kinds = {
        "hybrid": lambda q, v: hybrid_search(store, q, v, 10),
        "vector": lambda q, v: store.vector_search("memories", v, 10),
        "fulltext": lambda q, v: store.text_search("memories", q, 10),
    }
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for q, v in zip(QUERIES, qvecs, strict=True):  # warm-up
        for fn in kinds.values():
            fn(q, v)
    for _ in range(REPEAT):
        for q, v in zip(QUERIES, qvecs, strict=True):
            for name, fn in kinds.items():
                t = time.perf_counter()
                fn(q, v)
                times[name].append((time.perf_counter() - t) * 1000)
    return {k: {"p50_ms": round(statistics.median(v), 1), "p95_ms": round(pct(v, 0.95), 1),
                "n": len(v)} for k, v in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--ann", action="store_true",
                    help="also measure with memoryd's vector index on memories")
    a = ap.parse_args()
    rng = random.Random(7)
    emb = SentenceTransformerBackend(embedder_path("all-minilm-l6-v2"), name="all-minilm-l6-v2",
                                     dimensions=384, threads=1, idle_seconds=0)
    base = texts(DISTINCT, rng)
    t = time.perf_counter()
    vecs = emb.embed([f"{ti}\n{tx}" for ti, tx, _ in base])
    embed_s = time.perf_counter() - t
    qvecs = emb.embed(QUERIES)
    one: list[float] = []
    for q in QUERIES[:10]:
        t = time.perf_counter()
        emb.embed([q])
        one.append((time.perf_counter() - t) * 1000)
    results: dict[str, Any] = {}
    with Contention() as load, tempfile.TemporaryDirectory() as tmp:
        for n in a.sizes:
            t = time.perf_counter()
            store = build(Path(tmp) / f"s{n}", n, base, vecs, 384, random.Random(n))
            built = time.perf_counter() - t
            r = measure(store, qvecs)
            results[str(n)] = {"build_s": round(built, 1), **r}
            print(f"{n:>7} memories (built in {built:.0f} s): " + ", ".join(
                f"{k} p50 {v['p50_ms']} ms / p95 {v['p95_ms']} ms" for k, v in r.items()))
            if a.ann:  # what memoryd's own vector index (daemon/store/ann.py) buys
                t = time.perf_counter()
                ann.build(store.memories, n, store.location, replace=False)
                indexed = time.perf_counter() - t
                store.optimize()  # as the daemon does next: must keep the index as built
                r = measure(store, qvecs)
                results[str(n)]["with_memoryd_ann_index"] = {"index_build_s": round(indexed, 1),
                                                             **r}
                print(f"{n:>7} with memoryd's IVF_SQ index (built in {indexed:.0f} s): " + ", ".join(
                    f"{k} p50 {v['p50_ms']} ms / p95 {v['p95_ms']} ms" for k, v in r.items()))
    print(f"query embedding: median {statistics.median(one):.1f} ms (not in the numbers above)")
    print(load.line())
    write_result("search_latency", {
        "machine": machine(), "contention": load.summary(),
        "rows": f"{DISTINCT} distinct texts embedded for real ({embed_s:.0f} s); larger "
                "tables reuse their vectors with seeded noise (sigma 0.02, renormalized) and "
                "unique texts",
        "queries": len(QUERIES), "repeat": REPEAT, "k": 10,
        "query_embedding_ms_median": round(statistics.median(one), 1),
        "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
