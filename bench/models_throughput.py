"""Models throughput: memoryd's backends against the libraries called directly.

  summaries   LlamaCppBackend.complete  vs  llama_cpp.Llama.create_chat_completion
              same GGUF, same threads, same prompt (a real summarize.prompt of 6 file
              events) and params; tokens/s = completion tokens / wall seconds of the call
  embeddings  SentenceTransformerBackend.embed  vs  SentenceTransformer.encode
              same folder, same 256 sentences, same encode params; sentences/s

Runs alternate A/B then B/A (so drift on the shared box hits both sides), after one
warm-up call each that is not counted. Each call records the CPU other processes used
meanwhile; pairs run until 3 (embeddings: 7) are clean (others under 25 % of a core in
both calls) or a time budget is spent, and the medians use the clean pairs when there
are enough. llama-cpp-python reuses the evaluated prefix of the previous prompt, so both
sides' Llama objects are reset() before every call (outside the timing): every timed
call evaluates its whole prompt, as a summary of new activity does, and all runs see the
same prompt and so generate the same tokens.
Overhead % per pair = (memoryd seconds - direct seconds) / direct seconds; the target
(< 10 %) is judged on the median of the pairs, since the box's speed drifts between pairs
more than within one. The overhead of the two sides' medians is reported beside it.

Run:  /root/.local/share/memoryd/venv/bin/python bench/models_throughput.py [--only summary|embed]
(--only reruns one section, e.g. after a burst of load spoiled it, and keeps the other
section of results/models_throughput.json; each section records its own time and load.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# Never reach for a model hub, and keep transformers' progress bars out of the table.
os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
                  TRANSFORMERS_VERBOSITY="error", TOKENIZERS_PARALLELISM="false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import RESULTS, ROOT, Contention, OtherCpu, machine, wait_quiet, write_result
from collectors.base import Event
from daemon.pipeline import summarize
from daemon.pipeline.chunking import Chunk
from models.assets import embedder_dimensions, embedder_path
from models.llama_cpp import LlamaCppBackend
from models.sentence_tf import SentenceTransformerBackend

GGUF = Path("/root/.cache/memoryd/models-dev/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
EMBEDDER = "all-minilm-l6-v2"
THREADS = os.cpu_count() or 2
CONTEXT = 4096
PARAMS = {"max_tokens": 120, "temperature": 0.2, "top_p": 0.95, "seed": 0}  # as summaries
LLM_RUNS = 3  # per side
EMBED_RUNS = 7  # per side
N_SENTENCES = 256
TARGET_OVERHEAD_PCT = 10.0
CONTENDED = 25  # % CPU (100 = one core) used by other processes that spoils a pair
LLM_BUDGET_S = 110  # keep the whole script near 3 minutes on a busy box
EMBED_BUDGET_S = 60


def summary_messages() -> list[dict[str, str]]:
    """The prompt memoryd sends to summarize a chunk of 6 file saves."""
    base = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    files = ["daemon/journal.py", "daemon/engine.py", "daemon/redact.py", "tests/test_journal.py"]
    events = []
    for i in range(6):
        path = f"/home/dev/src/memoryd/{files[i % len(files)]}"
        text = (ROOT / files[i % 3]).read_text()[i * 150:i * 150 + 400]
        events.append(Event.new(ts=base + timedelta(minutes=2 * i), source="files",
                                kind="file.modified", subject=path, title=Path(path).name,
                                text=text))
    return summarize.prompt(Chunk(tuple(events)))


def sentences() -> list[str]:
    """256 sentence-sized texts: comment, docstring and code lines from memoryd's sources."""
    lines = []
    for d in ("daemon", "collectors", "models"):
        for p in sorted((ROOT / d).glob("*.py")):
            lines += [ln.strip() for ln in p.read_text().splitlines() if len(ln.strip()) > 40]
    return [lines[(i * 7) % len(lines)] for i in range(N_SENTENCES)]


def timed(fn: Any, i: int) -> dict[str, Any]:
    """Run fn(i) and add how much CPU other processes took meanwhile (100 = one core)."""
    with OtherCpu() as other:
        out = fn(i)
    out["other_cpu_pct"] = round(other.pct)
    return out


def alternate(a: Any, b: Any, runs: int, budget_s: float) -> dict[str, Any]:
    """Call a() and b() as pairs, alternating the order: A B, B A, A B, …

    The box is shared, so each call records the CPU other processes used meanwhile, and a
    pair is clean if that stayed under CONTENDED % in both calls. Pairs are run (after a
    short wait for a quiet box) until `runs` are clean, or, once `runs` pairs exist, until
    `budget_s` is spent. The medians use the clean pairs if there are `runs` of them, else
    every pair (and say so).
    """
    pairs: list[dict[str, Any]] = []
    started = time.monotonic()
    while True:
        clean = [p for p in pairs if p["clean"]]
        if len(clean) >= runs or (len(pairs) >= runs and time.monotonic() - started > budget_s):
            break
        wait_quiet(max_wait=5)
        i = len(pairs)
        if i % 2 == 0:
            x = timed(a, i)
            y = timed(b, i)
        else:
            y = timed(b, i)
            x = timed(a, i)
        ok = max(x["other_cpu_pct"], y["other_cpu_pct"]) <= CONTENDED
        pairs.append({"memoryd": x, "direct": y, "clean": ok})
        print(f"  pair {i + 1}: memoryd {x['s']:6.2f} s, direct {y['s']:6.2f} s   other CPU "
              f"{x['other_cpu_pct']:3d}% / {y['other_cpu_pct']:3d}%"
              f"{'' if ok else '  (contended)'}", flush=True)
    clean = [p for p in pairs if p["clean"]]
    used = clean if len(clean) >= runs else pairs
    return {"memoryd": [p["memoryd"] for p in used], "direct": [p["direct"] for p in used],
            "pairs_run": len(pairs), "pairs_clean": len(clean),
            "medians_over": "clean pairs" if used is clean else "all pairs (too few clean)",
            "all_pairs": [{"memoryd_s": round(p["memoryd"]["s"], 3),
                           "direct_s": round(p["direct"]["s"], 3),
                           "other_cpu_pct": [p["memoryd"]["other_cpu_pct"],
                                             p["direct"]["other_cpu_pct"]],
                           "clean": p["clean"]} for p in pairs]}


def llama_phases(llm: Any) -> dict[str, float]:
    """llama.cpp's own timings of the last call: prompt-eval and decode tokens/s."""
    import llama_cpp

    p = llama_cpp.llama_perf_context(llm._ctx.ctx)
    return {"prompt_eval_tok_s": p.n_p_eval / (p.t_p_eval_ms / 1000) if p.t_p_eval_ms else 0.0,
            "decode_tok_s": p.n_eval / (p.t_eval_ms / 1000) if p.t_eval_ms else 0.0}


def fresh(llm: Any) -> None:
    """Forget the previous prompt (evaluate all of the next one) and zero the timings."""
    import llama_cpp

    llm.reset()
    llama_cpp.llama_perf_context_reset(llm._ctx.ctx)


def bench_llm() -> dict[str, Any]:
    from llama_cpp import Llama

    backend = LlamaCppBackend(GGUF, context_tokens=CONTEXT, threads=THREADS, idle_seconds=0)
    direct: Any = Llama(model_path=str(GGUF), n_ctx=CONTEXT, n_threads=THREADS,
                   n_threads_batch=THREADS, verbose=False)

    messages = summary_messages()

    def via_memoryd(i: int) -> dict[str, Any]:
        with backend._model.lease() as llm:
            fresh(llm)
        started = time.perf_counter()
        out = backend.complete(messages, **PARAMS)
        seconds = time.perf_counter() - started
        with backend._model.lease() as llm:
            phases = llama_phases(llm)
        return {"s": seconds, "prompt": out.prompt_tokens,
                "completion": out.completion_tokens, "text": out.text, **phases}

    def via_direct(i: int) -> dict[str, Any]:
        fresh(direct)
        started = time.perf_counter()
        out = direct.create_chat_completion(messages=messages,
                                            max_tokens=PARAMS["max_tokens"],
                                            temperature=PARAMS["temperature"],
                                            top_p=PARAMS["top_p"], stop=None,
                                            response_format=None, seed=PARAMS["seed"])
        seconds = time.perf_counter() - started
        u = out["usage"]
        return {"s": seconds, "prompt": u["prompt_tokens"], "completion": u["completion_tokens"],
                "text": (out["choices"][0]["message"]["content"] or "").strip(),
                **llama_phases(direct)}

    # Warm-up (page the GGUF in), not counted: a short prompt is enough.
    hello = [{"role": "user", "content": "Say hello."}]
    backend.complete(hello, max_tokens=8)
    direct.create_chat_completion(messages=hello, max_tokens=8)
    pairs = alternate(via_memoryd, via_direct, LLM_RUNS, LLM_BUDGET_S)
    mem, dir_ = pairs["memoryd"], pairs["direct"]
    backend.unload()
    for r in mem + dir_:
        r["total_rate"] = (r["prompt"] + r["completion"]) / r["s"]
    return compare("summary", mem, dir_, unit="tok/s",
                   rate=lambda r: r["completion"] / r["s"],
                   extra={"same_text_each_run": all(m["text"] == d["text"]
                                                    for m, d in zip(mem, dir_, strict=True)),
                          "prompt_tokens": [r["prompt"] for r in mem],
                          "median_prompt_plus_completion_tok_s": {
                              "memoryd": round(statistics.median(r["total_rate"] for r in mem), 1),
                              "direct": round(statistics.median(r["total_rate"] for r in dir_), 1)},
                          "median_llama_phases_tok_s": {
                              side: {k: round(statistics.median(r[k] for r in rows), 1)
                                     for k in ("prompt_eval_tok_s", "decode_tok_s")}
                              for side, rows in (("memoryd", mem), ("direct", dir_))},
                          "completion_tokens_memoryd": [r["completion"] for r in mem],
                          "completion_tokens_direct": [r["completion"] for r in dir_],
                          **{k: v for k, v in pairs.items() if k not in ("memoryd", "direct")}})


def bench_embed() -> dict[str, Any]:
    import numpy as np
    from sentence_transformers import SentenceTransformer

    folder = embedder_path(EMBEDDER)
    texts = sentences()
    backend = SentenceTransformerBackend(folder, name=EMBEDDER,
                                         dimensions=embedder_dimensions(EMBEDDER),
                                         threads=0, idle_seconds=0)
    direct = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    vecs: dict[str, Any] = {}

    def via_memoryd(i: int) -> dict[str, Any]:
        started = time.perf_counter()
        vecs["memoryd"] = backend.embed(texts)
        return {"s": time.perf_counter() - started}

    def via_direct(i: int) -> dict[str, Any]:
        started = time.perf_counter()
        vecs["direct"] = direct.encode(texts, batch_size=32, normalize_embeddings=True,
                                       convert_to_numpy=True, show_progress_bar=False)
        return {"s": time.perf_counter() - started}

    via_memoryd(-1), via_direct(-2)  # warm-up, not counted
    pairs = alternate(via_memoryd, via_direct, EMBED_RUNS, EMBED_BUDGET_S)
    mem, dir_ = pairs["memoryd"], pairs["direct"]
    diff = float(np.max(np.abs(np.asarray(vecs["memoryd"]) - vecs["direct"])))
    return compare("embed", mem, dir_, unit="sent/s", rate=lambda r: N_SENTENCES / r["s"],
                   extra={"max_abs_diff": diff, "sentences": N_SENTENCES,
                          **{k: v for k, v in pairs.items() if k not in ("memoryd", "direct")}})


def compare(name: str, mem: list[dict[str, Any]], dir_: list[dict[str, Any]], *, unit: str,
            rate: Any, extra: dict[str, Any]) -> dict[str, Any]:
    ms, ds = [r["s"] for r in mem], [r["s"] for r in dir_]
    overhead = (statistics.median(ms) - statistics.median(ds)) / statistics.median(ds) * 100
    paired = [(m - d) / d * 100 for m, d in zip(ms, ds, strict=True)]
    return {"unit": unit,
            "memoryd": {"seconds": [round(x, 3) for x in ms],
                        "median_s": round(statistics.median(ms), 3),
                        "median_rate": round(statistics.median(rate(r) for r in mem), 1)},
            "direct": {"seconds": [round(x, 3) for x in ds],
                       "median_s": round(statistics.median(ds), 3),
                       "median_rate": round(statistics.median(rate(r) for r in dir_), 1)},
            "overhead_pct": round(overhead, 1),
            "median_paired_overhead_pct": round(statistics.median(paired), 1),
            "other_cpu_pct_per_run": {"memoryd": [r["other_cpu_pct"] for r in mem],
                                      "direct": [r["other_cpu_pct"] for r in dir_]},
            "paired_overhead_pct": [round(p, 1) for p in paired],
            # Pairs run back to back, so the paired median is the robust figure on a box
            # whose speed drifts (host-level noise does not show as other processes' CPU).
            "meets_target": statistics.median(paired) < TARGET_OVERHEAD_PCT, **extra}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["summary", "embed"],
                    help="run one section; the other is kept from the previous results file")
    only = ap.parse_args().only
    box = machine()
    previous = RESULTS / "models_throughput.json"
    old = json.loads(previous.read_text()) if only and previous.exists() else {}
    sections: dict[str, Any] = {}
    titles = {"summary": f"summaries: {GGUF.name}, {THREADS} threads, {LLM_RUNS}+{LLM_RUNS} runs",
              "embed": f"embeddings: {EMBEDDER}, {N_SENTENCES} sentences, "
                       f"{EMBED_RUNS}+{EMBED_RUNS} runs"}
    for name, bench in (("summary", bench_llm), ("embed", bench_embed)):
        title = titles[name]
        if only and name != only:
            if name in old:
                sections[name] = old[name]
                print(f"{name}: kept from the run of {old[name].get('when', '?')}")
            continue
        print(title, flush=True)
        with Contention() as meter:
            sections[name] = bench()
        sections[name].update(when=datetime.now(UTC).isoformat(timespec="seconds"),
                              commit=box["commit"], contention=meter.summary())
        print(f"  {meter.line()}")
    print()
    print(f"{'what':8s} {'memoryd':>14s} {'direct':>14s} {'overhead':>9s} {'of medians':>11s}"
          f" {'target':>7s} ok   pairs (memoryd s / direct s)")
    for what, r in sections.items():
        m, d = r["memoryd"], r["direct"]
        runs = ", ".join(f"{x:.2f}/{y:.2f}" for x, y in zip(m["seconds"], d["seconds"], strict=True))
        print(f"{what:8s} {m['median_rate']:>7.1f} {r['unit']:6s} {d['median_rate']:>7.1f} "
              f"{r['unit']:6s} {r['median_paired_overhead_pct']:>+8.1f}% "
              f"{r['overhead_pct']:>+10.1f}% {'<10%':>7s} {'yes' if r['meets_target'] else 'NO':4s}"
              f" {runs}")
    if llm := sections.get("summary"):
        tot = llm["median_prompt_plus_completion_tok_s"]
        ph = llm["median_llama_phases_tok_s"]
        print(f"summary: (prompt + completion) tok/s memoryd {tot['memoryd']}, "
              f"direct {tot['direct']}")
        print(f"summary: llama.cpp timings: prompt eval {ph['memoryd']['prompt_eval_tok_s']} / "
              f"{ph['direct']['prompt_eval_tok_s']} tok/s, decode "
              f"{ph['memoryd']['decode_tok_s']} / {ph['direct']['decode_tok_s']} tok/s "
              "(memoryd / direct)")
        print(f"summary: prompt tokens {llm['prompt_tokens']}, completion tokens "
              f"{llm['completion_tokens_memoryd']} vs {llm['completion_tokens_direct']}, "
              f"same text each run: {llm['same_text_each_run']}")
    if emb := sections.get("embed"):
        print(f"embed: max |memoryd - direct| = {emb['max_abs_diff']:.2e}")
    for what, r in sections.items():
        print(f"{what}: {r['pairs_clean']} clean of {r['pairs_run']} pairs; medians over "
              f"{r['medians_over']}; run {r.get('when')}, other processes "
              f"{r['contention']['other_cpu_pct_mean']}% CPU on average")
    write_result("models_throughput", {
        "machine": box,
        "params": {"gguf": GGUF.name, "threads": THREADS, "n_ctx": CONTEXT, **PARAMS,
                   "llm_runs_per_side": LLM_RUNS, "embedder": EMBEDDER,
                   "embed_runs_per_side": EMBED_RUNS, "sentences": N_SENTENCES},
        **sections})
    return 0


if __name__ == "__main__":
    sys.exit(main())
