"""Hallucination rate per model, side by side: the same chunks and days, each model asked
with memoryd's own prompts (and schema, for chunks), each answer judged by the independent check.

Input is a build the eval kit kept (`../shared/eval/run.py SET --keep DIR`): its journal
gives the events (as collected and redacted), its store the chunk memories a day digest is
made from. For every model named, in one run, interleaved chunk by chunk:

- chunk answers: `summarize.prompt` of an evenly spread sample of the build's chunks (the
  chunking of `[pipeline]`), the model under `summarize.RESPONSE_FORMAT`;
- day digests: `compaction.prompt` of each day's chunk memories (plain prose, as memoryd
  asks it).

"before repair" counts answers in which `daemon/pipeline/faithful.py` (which shares no
code with the summarizer) finds an identifier-looking token that the sources lack: a
path, URL, host, number, ticket, name. "after repair" re-checks the memory text memoryd
would store (`chunk_fields` / `digest_fields`) against the same sources. Model seconds per
answer are reported too. The chunk memories a digest reads are the build's (extracted
ones with the default `chunk_model = "never"`), the same for both models.

Run:  $PY bench/hallucination_rate.py DIR [--chunks 24] [--models qwen2.5-coder-0.5b-instruct
      qwen2.5-coder-1.5b-instruct]
The 1.5B model comes from `install.sh --quality` (its 22 packages). ~15 min for both
models on a quiet 2-core box.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import Contention, machine, write_result

MODELS = ("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct")


def build_events(cfg: Any) -> list[Any]:
    from daemon.intake.journal import Journal

    journal = Journal(cfg.data_path / "journal.sqlite3")
    try:
        return [ev for stage in range(4) for ev in journal.at_stage(stage, 1_000_000)]
    finally:
        journal.close()


def sample(items: list[Any], n: int) -> list[Any]:
    if n >= len(items):
        return items
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def day_rows(store: Any) -> dict[str, list[dict[str, Any]]]:
    from daemon.pipeline import compaction

    rows = store.memory_rows("level = 'chunk'", compaction.ROW_COLUMNS)
    days: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        days[compaction.day_key(r["ts"])].append(r)
    return {k: sorted(v, key=lambda r: r["ts"]) for k, v in sorted(days.items())}


def ask(llm: Any, messages: list[dict[str, str]], max_tokens: int,
        schema: dict[str, Any] | None) -> tuple[str, float]:
    started = time.perf_counter()
    out = llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.2,
                                     response_format=schema)
    return out["choices"][0]["message"]["content"] or "", time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", help="a run.py --keep directory (memoryd.toml and data/)")
    ap.add_argument("--chunks", type=int, default=24)
    ap.add_argument("--days", type=int, default=7, help="day digests asked (the first N)")
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    a = ap.parse_args()
    from llama_cpp import Llama

    from daemon.config import load_config
    from daemon.pipeline import compaction, faithful, summarize
    from daemon.pipeline.chunking import chunk_events
    from daemon.store.engine import Engine
    from models.assets import gguf_path

    os.environ["HOME"] = str(Path(a.dir) / "home")
    cfg = load_config(Path(a.dir) / "memoryd.toml")
    p = cfg.pipeline
    chunks = sample(chunk_events(build_events(cfg), gap_seconds=p.chunk_gap_seconds,
                                 max_events=p.chunk_max_events, now=datetime.now(UTC),
                                 close_after_seconds=0, flush=True), a.chunks)
    engine = Engine(cfg)
    days = dict(list(day_rows(engine.store).items())[:a.days])
    engine.close()
    print(f"{len(chunks)} chunks ({sum(len(c.events) for c in chunks)} events), "
          f"{len(days)} days; models: {', '.join(a.models)}", flush=True)
    llms = {m: Llama(model_path=str(gguf_path(m, cfg.models_path)), n_ctx=4096,
                     n_threads=2, seed=1, verbose=False) for m in a.models}
    # counts[model][level] = [answers, failing before, failing after, seconds...]
    stats: dict[str, dict[str, dict[str, Any]]] = {
        m: {lv: {"n": 0, "before": 0, "after": 0, "unusable": 0, "seconds": [],
                 "examples": []} for lv in ("chunk", "day")} for m in a.models}
    contention = Contention()
    with contention:
        for c in chunks:
            src = summarize.source_text(c)
            for m, llm in llms.items():  # interleaved: both see the same load
                text, secs = ask(llm, summarize.prompt(c), summarize.answer_tokens(
                    len(c.events), cfg.compaction.chunk_max_tokens), summarize.RESPONSE_FORMAT)
                fields = summarize.chunk_fields(c, text)
                stored = summarize.memory_row(c, fields, m, [0.0])["text"]
                _count(stats[m]["chunk"], secs, fields.unsupported, fields.fallback,
                       faithful.check(stored, src).ok, f"{m} chunk {c.id[:8]}")
        for key, rows in days.items():
            src = compaction.source_text(rows)
            for m, llm in llms.items():
                text, secs = ask(llm, compaction.prompt("day", key, rows),
                                 cfg.compaction.digest_max_tokens, None)  # plain prose
                fields = compaction.digest_fields("day", key, rows, text)
                stored = compaction.digest_row("day", key, rows, fields, m, [0.0])["text"]
                _count(stats[m]["day"], secs, fields.unsupported, fields.fallback,
                       faithful.check(stored, src).ok, f"{m} day {key}")
    print()
    print("| model | level | answers | named what the sources lack (before repair) "
          "| unusable | stored text failing the check (after repair) | s per answer (median) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for m in a.models:
        for lv, s in stats[m].items():
            if s["n"]:
                print(f"| {m} | {lv} | {s['n']} | {s['before']} ({s['before'] / s['n']:.2f}) "
                      f"| {s['unusable']} | {s['after']} | "
                      f"{statistics.median(s['seconds']):.1f} |")
    for m in a.models:
        for lv, s in stats[m].items():
            for ex in s["examples"][:4]:
                print(f"  {m} {lv}: dropped {ex}")
    print(contention.line())
    write_result("hallucination_rate", {"machine": machine(), "chunks": len(chunks),
                                        "days": len(days), "stats": stats,
                                        "contention": contention.summary()})
    return 0


def _count(s: dict[str, Any], secs: float, unsupported: list[str], unusable: bool,
           ok_after: bool, label: str) -> None:
    print(f"  {label}: {secs:.1f} s, lacks {unsupported[:4]}, unusable {unusable}, "
          f"stored text passes {ok_after}", flush=True)
    s["n"] += 1
    s["seconds"].append(round(secs, 2))
    s["before"] += bool(unsupported)
    s["unusable"] += unusable
    s["after"] += not ok_after
    if unsupported:
        s["examples"].append(unsupported[:4])


if __name__ == "__main__":
    sys.exit(main())
