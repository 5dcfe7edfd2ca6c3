"""Chunk memories without a model: what a memory says when only extraction writes it.

Copies an eval-kit build made with `[pipeline] summarize = false` (`run.py --keep DIR
--extra-config "[pipeline]\\nsummarize = false"`) to DEST, chunks its journaled events as
the pipeline does, and stores for each chunk the memory `chunk_fields(chunk, "")` makes
(the deterministic activity line, identifiers, file key lines, stated decisions and
to-dos: what every model-written memory also carries), embedded by the real embedder
into the real LanceDB store. `bench/memory_quality.py --build x=DEST` then scores it.
It isolates what extraction alone buys, in ~1 minute instead of the model's hours on a
busy box.

Run:  PYTHONPATH=. ~/.local/opt/memoryd/venv/bin/python bench/extractive_memories.py DIR DEST
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
                  TRANSFORMERS_VERBOSITY="error", TOKENIZERS_PARALLELISM="false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("dest")
    a = ap.parse_args()
    src, dest = Path(a.dir).resolve(), Path(a.dest).resolve()
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, symlinks=True)
    toml = (dest / "memoryd.toml").read_text().replace(str(src), str(dest))
    toml = re.sub(r"summarize = false", "summarize = true", toml)
    (dest / "memoryd.toml").write_text(toml)
    log = Path(str(src) + ".log")
    if log.exists():
        shutil.copy(log, str(dest) + ".log")

    from daemon.config import load_config
    from daemon.intake.journal import INDEXED, Journal
    from daemon.pipeline import summarize
    from daemon.pipeline.chunking import chunk_events
    from daemon.recall.timeexpr import user_zone
    from daemon.store.engine import Engine

    os.environ["HOME"] = str(dest / "home")
    cfg = load_config(dest / "memoryd.toml")
    journal = Journal(cfg.data_path / "journal.sqlite3")
    events = journal.at_stage(INDEXED, 100_000)
    p = cfg.pipeline
    chunks = chunk_events(events, gap_seconds=p.chunk_gap_seconds, max_events=p.chunk_max_events,
                          now=datetime.now(UTC), close_after_seconds=0, flush=True,
                          tz=user_zone(cfg.search.timezone))
    engine = Engine(cfg)
    rows = []
    for chunk in chunks:
        fields = summarize.chunk_fields(chunk, "")
        rows.append(summarize.memory_row(chunk, fields, summarize.FALLBACK_MODEL, []))
    vectors = engine.models.embed([f"{r['title']}\n{r['text']}"[:2000] for r in rows])
    for r, v in zip(rows, vectors, strict=True):
        r["vector"] = v
    engine.store.upsert_memories(rows)
    engine.optimize()  # the full-text index covers the new rows, as after `ingest --once`
    engine.close()
    print(f"{len(events)} events, {len(chunks)} chunks, {len(rows)} extractive memories "
          f"in {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
