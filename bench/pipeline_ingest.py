"""Ingest past the journal: events per second from the journal to searchable memory, with
and without the models, in one run.

Three stages over the same events (file saves, ~300 chars of memoryd's own source each,
as `journal_ingest.py` makes them), each timed alone:

  1. store only, no model: the events with ready-made vectors upserted into the LanceDB
     store (what indexing costs without the embedder)
  2. journal → searchable: `Pipeline.index_step` until the journal is drained (embed with
     the bundled sentence-transformers model, upsert into the store), as the daemon does
  3. journal → summarized memory: `Pipeline.summary_step(flush=True)` on a smaller set
     (chunks summarized by the bundled 0.5B GGUF under its JSON schema, embedded, stored)

The ratio of 1 to 2 is the embedder's share; 3 is bounded by llama.cpp on two cores.
Everything runs in this process on a temp data dir; nothing leaves the machine.

Run:  /root/.local/share/memoryd/venv/bin/python bench/pipeline_ingest.py [--events 2000]
      [--summary-events 96]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import Contention, machine, write_result  # noqa: E402
from bench.journal_ingest import make_events  # noqa: E402
from collectors.base import Batch, Event  # noqa: E402
from daemon.config import load_config  # noqa: E402
from daemon.store.engine import Engine  # noqa: E402
from daemon.intake.journal import Journal  # noqa: E402
from daemon.pipeline.steps import Pipeline  # noqa: E402
from daemon.intake.redact import redact  # noqa: E402
from daemon.store.lance import event_row  # noqa: E402

MODELS_DIR = "/root/.cache/memoryd/models-dev"  # the assembled GGUF, as the other benches


def _config(data: Path) -> Any:
    path = data.parent / "config.toml"
    data.mkdir(parents=True, exist_ok=True)
    path.write_text(f'data_dir = "{data}"\n\n[models]\ndir = "{MODELS_DIR}"\n'
                    f"threads = {os.cpu_count() or 2}\n\n"
                    "[compaction]\nyield_cpu_percent = 0\nyield_on_battery = false\n")
    return load_config(path)


def _sessions(events: list[Event], per_chunk: int) -> list[Event]:
    """The same events re-timed into work sessions of `per_chunk` saves a minute apart in
    one project, an hour between sessions, all in the past: each session is one closed
    chunk, summarized at once."""
    start = datetime.now(UTC) - timedelta(days=2)
    out = []
    for i, e in enumerate(events):
        session = i // per_chunk
        when = start + timedelta(hours=session, minutes=i % per_chunk)
        path = f"/home/dev/src/proj{session}/{e.title}"  # one project per session
        out.append(Event.new(ts=when, source=e.source, kind=e.kind, subject=path,
                             title=e.title, text=e.text, attrs=e.attrs))
    return out


def store_only(tmp: Path, events: list[Event], dims: int) -> dict[str, Any]:
    cfg = _config(tmp / "store-only" / "data")
    engine = Engine(cfg)
    rng = random.Random(3)
    rows = [event_row(e, [rng.uniform(-1, 1) for _ in range(dims)]) for e in events]
    store = engine.store  # opened (with its tables) before the clock starts
    started = time.perf_counter()
    for i in range(0, len(rows), 256):  # the pipeline's batch size
        store.upsert_events(rows[i:i + 256])
    seconds = time.perf_counter() - started
    engine.close()
    return {"events": len(rows), "seconds": round(seconds, 2),
            "events_per_s": round(len(rows) / seconds, 1)}


def to_searchable(tmp: Path, events: list[Event]) -> tuple[dict[str, Any], int]:
    cfg = _config(tmp / "searchable" / "data")
    journal = Journal(cfg.data_path / "journal.sqlite3", redact=redact)
    journal.append(Batch("files", events))
    engine = Engine(cfg)
    engine.models.embed(["warm up"])  # model load is start-up, not throughput
    dims = len(engine.models.embed(["x"])[0])
    pipeline = Pipeline(cfg, journal, engine)
    started = time.perf_counter()
    done = 0
    while n := pipeline.index_step():
        done += n
    seconds = time.perf_counter() - started
    found = engine.search(events[len(events) // 2].title, 5)
    engine.close()
    journal.close()
    return {"events": done, "seconds": round(seconds, 2),
            "events_per_s": round(done / seconds, 1),
            "last_file_found": any(h.title == events[len(events) // 2].title
                                   for h in found)}, dims


def to_summaries(tmp: Path, events: list[Event], per_chunk: int) -> dict[str, Any]:
    cfg = _config(tmp / "summaries" / "data")
    journal = Journal(cfg.data_path / "journal.sqlite3", redact=redact)
    journal.append(Batch("files", _sessions(events, per_chunk)))
    engine = Engine(cfg)
    pipeline = Pipeline(cfg, journal, engine)
    while pipeline.index_step():
        pass
    engine.models.complete("compaction", [{"role": "user", "content": "hi"}], max_tokens=1)
    started = time.perf_counter()
    report = pipeline.drain()
    seconds = time.perf_counter() - started
    memories = engine.store.counts()["memories"]
    engine.close()
    journal.close()
    return {"events": report.summarized_events, "chunks": report.summarized_chunks,
            "memories": memories, "errors": report.errors, "seconds": round(seconds, 1),
            "events_per_s": round(report.summarized_events / seconds, 2),
            "seconds_per_chunk": round(seconds / max(1, report.summarized_chunks), 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--summary-events", type=int, default=96)
    ap.add_argument("--per-chunk", type=int, default=8, help="saves per work session")
    args = ap.parse_args()
    events = make_events(args.events, "ingest", seed=11)
    out: dict[str, Any] = {"machine": machine()}
    with tempfile.TemporaryDirectory(prefix="memoryd-bench-") as tmp, Contention() as busy:
        searchable, dims = to_searchable(Path(tmp), events)
        only = store_only(Path(tmp), make_events(args.events, "store", seed=12), dims)
        summaries = to_summaries(Path(tmp), make_events(args.summary_events, "sum", seed=13),
                                 args.per_chunk)
    out.update({"store_only": only, "journal_to_searchable": searchable,
                "journal_to_summaries": summaries, "contention": busy.summary(),
                "embedder_share_of_indexing": round(
                    1 - searchable["events_per_s"] / only["events_per_s"], 3)})
    print(f"store only (vectors given)        {only['events_per_s']:>9.1f} events/s")
    print(f"journal -> searchable (embed)     {searchable['events_per_s']:>9.1f} events/s  "
          f"({searchable['events']} events, found again: {searchable['last_file_found']})")
    print(f"journal -> summarized (0.5B GGUF) {summaries['events_per_s']:>9.2f} events/s  "
          f"({summaries['chunks']} chunks, {summaries['seconds_per_chunk']} s a chunk)")
    print(busy.line())
    write_result("pipeline_ingest", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
