"""Embedder backends side by side: torch (sentence-transformers) vs ONNX fp32 vs ONNX int8.

For the packaged all-MiniLM-L6-v2, in one run on the same texts:
  - indexing throughput (docs/s) with 1 thread and with every core, batches of 32, the
    texts in arrival order and sorted by length (less padding);
  - one-query latency (p50 over 50 queries) with one thread;
  - compatibility with the stored (torch) vectors: cosine of each backend's vector with
    torch's for the same text (min / mean), and the top-10 overlap of a query embedded by
    the backend against docs embedded by torch (the mixed store after an upgrade);
  - a fresh process's load time and RSS for ONNX int8 (what the resident reader pays).

Texts: the eval kit's dev-week events and questions when ../shared/eval is present,
else a synthetic set of commands, URLs and file lines this script makes itself.

Run:  PY bench/embedder_backends.py [--n 600]      (~3 min on the 2-core box)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import machine, write_result

EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval" / "sets" / "dev-week"
if not EVAL.is_dir():
    EVAL = Path("/work/shared/eval/sets/dev-week")


def texts(n: int) -> tuple[list[str], list[str]]:
    """(documents, queries)."""
    if (EVAL / "activities.json").is_file():
        events = json.loads((EVAL / "activities.json").read_text())["events"]
        docs = ["\n".join(str(v) for k, v in e.items()
                          if isinstance(v, str) and k not in ("id", "source", "browser"))
                for e in events]
        qs = [q["question"] for q in json.loads((EVAL / "questions.json").read_text())
              ["questions"]]
    else:
        words = "deploy config lead decay invoice sync heron kernel vendor page port".split()
        docs = [f"git commit -m 'fix {words[i % 11]} {i}'\nhttps://example.org/{words[i % 7]}"
                f"/{i}\n" + " ".join(words[(i * j) % 11] for j in range(i % 40))
                for i in range(n)]
        qs = [f"what did I change in the {w} settings" for w in words]
    while len(docs) < n:
        docs = docs + docs
    return docs[:n], qs


def rate(embed: Any, docs: list[str], sort: bool) -> float:
    order = sorted(docs, key=len) if sort else docs
    t = time.perf_counter()
    for i in range(0, len(order), 32):
        embed(order[i:i + 32])
    return len(docs) / (time.perf_counter() - t)


def cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def child_load(onnx_file: str, folder: str) -> dict[str, float]:
    code = ("import time,sys;t=time.perf_counter();from pathlib import Path;"
            "from models.onnx_embed import OnnxEmbedder as O;"
            f"e=O(Path({onnx_file!r}),Path({folder!r}),name='x');e.embed(['warm up']);"
            "s=time.perf_counter()-t;"
            "r=[l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1];"
            "print(s,int(r)/1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ,
                                          "PYTHONPATH": str(Path(__file__).parents[1])})
    s, rss = out.stdout.split()
    return {"load_s": round(float(s), 2), "rss_mb": round(float(rss), 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=600)
    args = ap.parse_args()
    import torch
    from sentence_transformers import SentenceTransformer

    from models import onnx_embed
    from models.assets import embedder_path

    src = embedder_path("all-minilm-l6-v2")
    out = Path(tempfile.mkdtemp(prefix="onnx-bench-"))
    t = time.perf_counter()
    onnx_embed.ensure_export(src, out)
    export_s = time.perf_counter() - t
    docs, queries = texts(args.n)
    st = SentenceTransformer(str(src), device="cpu", local_files_only=True)

    def torch_embed(x: list[str]) -> list[list[float]]:
        return st.encode(x, batch_size=32, normalize_embeddings=True).tolist()

    backends: dict[str, Any] = {"torch": torch_embed}
    for label, file in (("onnx-fp32", onnx_embed.FP32), ("onnx-int8", onnx_embed.INT8)):
        backends[label] = onnx_embed.OnnxEmbedder(out / file, src, name=label).embed
    ref_docs = torch_embed(docs)
    ref_q = torch_embed(queries)
    top = {i: set(sorted(range(len(docs)), key=lambda j: -cos(q, ref_docs[j]))[:10])
           for i, q in enumerate(ref_q)}
    rows: dict[str, Any] = {}
    for label, embed in backends.items():
        row: dict[str, Any] = {}
        for threads in (1, os.cpu_count() or 1):
            torch.set_num_threads(threads)
            if label != "torch":
                embed.__self__.threads = threads
                embed.__self__.unload()
            embed(docs[:8])
            row[f"docs_per_s_{threads}t"] = round(rate(embed, docs, sort=False), 1)
            row[f"docs_per_s_{threads}t_by_length"] = round(rate(embed, docs, sort=True), 1)
        torch.set_num_threads(1)
        if label != "torch":
            embed.__self__.threads = 1
            embed.__self__.unload()
        lat = []
        for q in queries * (50 // len(queries) + 1):
            t = time.perf_counter()
            embed([q])
            lat.append(time.perf_counter() - t)
        row["query_ms_p50"] = round(statistics.median(lat[:50]) * 1000, 1)
        vecs = embed(docs)
        cs = [cos(a, b) for a, b in zip(vecs, ref_docs, strict=True)]
        row["cos_vs_torch_min"], row["cos_vs_torch_mean"] = round(min(cs), 5), \
            round(statistics.mean(cs), 5)
        qv = embed(queries)
        overlap = [len(top[i] & set(sorted(range(len(docs)),
                                           key=lambda j: -cos(q, ref_docs[j]))[:10])) / 10
                   for i, q in enumerate(qv)]
        row["top10_overlap_vs_torch"] = round(statistics.mean(overlap), 3)
        rows[label] = row
    rows["onnx-int8"].update(child_load(str(out / onnx_embed.INT8), str(src)))
    result = {"machine": machine(), "docs": len(docs), "queries": len(queries),
              "export_s": round(export_s, 1), "backends": rows}
    print(json.dumps(result, indent=1))
    write_result("embedder_backends", result)


if __name__ == "__main__":
    main()
