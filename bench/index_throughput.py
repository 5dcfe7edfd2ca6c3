"""The worker's indexing embedder on a heavy home's history: threads x texts per ONNX call.

Texts are `event_doc`s of real journal rows (what `Engine.index` embeds): pass a journal
with `--journal` (a `bench/backfill.py` work dir keeps one: WORKDIR/data/journal.sqlite3),
else this script builds a small heavy home with the eval kit and collects it first. Each
variant is a fresh `OnnxIndexEmbedder` over the same texts, variants interleaved over
`--rounds`; docs/s is the median. Vectors are compared with the first variant's (cosine).

Run:  PY bench/index_throughput.py --journal /tmp/backfill-XXXX/data/journal.sqlite3
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import Contention, machine, write_result

VARIANTS = [(1, 32), (1, 8), (2, 32), (2, 8)]  # (threads, texts per call); (1, 32) was the default


def docs_from(journal: Path, n: int) -> list[str]:
    from daemon.intake.journal import _row_event
    from daemon.store.lance import event_doc

    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    rows = db.execute("SELECT * FROM events ORDER BY seq").fetchall()
    random.Random(7).shuffle(rows)
    return [event_doc(_row_event(r))[:2000] for r in rows[:n]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--journal", type=Path, required=True)
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from models.assets import embedder_path
    from models.onnx_index import OnnxIndexEmbedder

    models_dir = Path("/root/.cache/memoryd/test-models")
    docs = docs_from(args.journal, args.n)
    rates: dict[str, list[float]] = {}
    ref: list[list[float]] | None = None
    worst: dict[str, float] = {}
    info = machine()
    with Contention() as busy:
        for _ in range(args.rounds):
            for threads, size in VARIANTS:
                name = f"threads={threads} batch={size}"
                e = OnnxIndexEmbedder(embedder_path("all-minilm-l6-v2"), models_dir,
                                      name="all-minilm-l6-v2", dimensions=384,
                                      threads=threads, idle_seconds=0, batch_size=size)
                e.embed(docs[:8])
                start = time.perf_counter()
                vecs = [v for i in range(0, len(docs), 256) for v in e.embed(docs[i:i + 256])]
                rates.setdefault(name, []).append(len(docs) / (time.perf_counter() - start))
                ref = ref or vecs
                worst[name] = min(sum(a * b for a, b in zip(x, y, strict=True))
                                  for x, y in zip(ref, vecs, strict=True))
                e.unload()
    base = statistics.median(rates["threads=1 batch=32"])
    print(f"{len(docs)} heavy-home texts, {args.rounds} rounds interleaved; {busy.line()}")
    print("| variant | docs/s (median) | all rounds | vs 1 thread, 32 a call | min cosine |")
    print("| --- | ---: | --- | ---: | ---: |")
    out = {}
    for name, r in rates.items():
        med = statistics.median(r)
        out[name] = {"docs_per_s": round(med, 1), "rounds": [round(x, 1) for x in r],
                     "min_cosine": round(worst[name], 6)}
        print(f"| {name} | {med:.1f} | {', '.join(f'{x:.1f}' for x in r)} | "
              f"{med / base:.2f}x | {worst[name]:.6f} |")
    write_result("index_throughput", {"machine": info, "contention": busy.summary(),
                                      "docs": len(docs), "variants": out})


if __name__ == "__main__":
    main()
