"""What a resident reader costs in memory, by what it loads (issue 17): a probe.

Each variant runs in a fresh process on the same real store, embeds the same queries with
the reader's query embedder (fp32 ONNX, weights mapped from their file) and runs a
vector and a full-text search per query on both tables, then reports its RSS split into
anonymous and file-backed after loading, after the searches and after a shed
(daemon/store/memtrim.py):
  - lancedb: the `lancedb` Python package, as the reader uses today;
  - native: only lancedb's native module `lancedb._lancedb` (loaded from its file, without
    the package's Python side and the REST clients it imports), through its async API.
The parent checks that both variants return the same ids with the same distances and
scores. The native variant is a measurement, not a reader memoryd uses (yet).

Run:  PY bench/reader_footprint.py DATA_DIR/store [MODELS_DIR]
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import Contention, machine, write_result

QUERIES = ["which pier does the ferry leave from", "git config", "python sqlite docs",
           "what did I do yesterday", "budget spreadsheet", "zsh history"]
K = 50


def _mem() -> dict[str, float]:
    out = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Rss", "Anonymous"):
            out[key.lower()] = round(int(value.split()[0]) / 1024, 1)
    return out


def _embedder(models_dir: Path) -> tuple[Any, frozenset[str]]:
    from models import onnx_embed
    from models.assets import embedder_path

    src = embedder_path("all-minilm-l6-v2")
    out = onnx_embed.ensure_export(src, onnx_embed.export_dir(models_dir, "all-minilm-l6-v2",
                                                              src))
    file = onnx_embed.ensure_mapped(out)
    e = onnx_embed.OnnxEmbedder(file, src, name="q", mapped=True)
    e.load()
    return e, frozenset({str(file.with_name(file.name + ".data").resolve())})


def _lancedb(store: str, vectors: list[list[float]]) -> list[Any]:
    import lancedb

    db = lancedb.connect(store)
    out = []
    for name in ("events", "memories"):
        t = db.open_table(name)
        for q, v in zip(QUERIES, vectors, strict=True):
            vec = t.search(v, vector_column_name="vector").distance_type("cosine").limit(K)
            fts = t.search(q, query_type="fts", fts_columns="doc").limit(K)
            out.append([(r["id"], round(r["_distance"], 6)) for r in vec.to_list()])
            out.append([(r["id"], round(r["_score"], 6)) for r in fts.to_list()])
    return out


def _native(store: str, vectors: list[list[float]]) -> list[Any]:
    import importlib.util

    import pyarrow as pa

    found = importlib.util.find_spec("lancedb")
    assert found is not None and found.submodule_search_locations
    so = next(Path(found.submodule_search_locations[0]).glob("_lancedb*.so"))
    spec = importlib.util.spec_from_file_location("lancedb._lancedb", so)
    assert spec is not None and spec.loader is not None
    native = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(native)

    async def rows(query: Any, key: str) -> list[tuple[str, float]]:
        got = []
        async for batch in await query.execute(None, None):
            got += [(r["id"], round(r[key], 6)) for r in pa.Table.from_batches([batch])
                    .select(["id", key]).to_pylist()]
        return got

    async def run() -> list[Any]:
        conn = await native.connect(store, None, None, None, None, 0.0, None, None, None,
                                    False, None)
        out = []
        for name in ("events", "memories"):
            t = await conn.open_table(name, None, None, None, None, None)
            for q, v in zip(QUERIES, vectors, strict=True):
                vec = t.query().nearest_to(pa.array(v, type=pa.float32()))
                vec.distance_type("cosine")
                vec.limit(K)
                out.append(await rows(vec, "_distance"))
                fts = t.query()
                fts.limit(K)
                out.append(await rows(fts.nearest_to_text({"query": q, "columns": ["doc"]}),
                                      "_score"))
        return out

    return asyncio.run(run())


def child(variant: str, store: str, models_dir: Path) -> None:
    from daemon.store import memtrim

    steps = {"start": _mem()}
    embedder, mapped = _embedder(models_dir)
    vectors = embedder.embed(QUERIES)
    steps["embedder"] = _mem()
    results = (_lancedb if variant == "lancedb" else _native)(store, vectors)
    steps["searched"] = _mem()
    memtrim.shed(mapped)
    steps["shed"] = _mem()
    print(json.dumps({"variant": variant, "memory_mb": steps, "results": results}))


def main() -> None:
    if sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], Path(sys.argv[4]))
        return
    store = str(Path(sys.argv[1]).resolve())
    models_dir = sys.argv[2] if len(sys.argv) > 2 else str(
        Path.home() / ".cache" / "memoryd" / "test-models")
    rows = {}
    with Contention() as load:
        for variant in ("lancedb", "native"):
            proc = subprocess.run([sys.executable, __file__, "--child", variant, store,
                                   models_dir], capture_output=True, text=True, check=True)
            rows[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
    same = rows["lancedb"].pop("results") == rows["native"].pop("results")
    result = {"machine": machine(), "load": load.summary(), "same_results": same,
              "variants": rows}
    print(json.dumps(result, indent=1))
    write_result("reader_footprint", result)


if __name__ == "__main__":
    main()
