"""One racing writer for the commit-conflict tests: waits for GO_FILE (so several start
at the same instant), opens the store CONFIG names (creating, indexing or migrating its
tables as the first daemon would), then runs every write path in rounds: upserts of its
own rows and of one id every racer writes, deletes (forget, retention), optimize and
cleanup. Prints one JSON line: what it kept, what it deleted, the conflicts it retried.

    python -m tests.daemon.store.racer CONFIG WORKER GO_FILE ROUNDS
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from daemon.config import load_config
from daemon.store.filters import sql_str
from daemon.store.lance import Store, open_store
from daemon.store.retry import conflict_counts

EMBEDDER = "all-minilm-l6-v2"
PER_ROUND = 4
MODES = os.environ.get("RACER_MODES", "optimize,purge")  # which maintenance writes run


def event(id_: str, minute: int, text: str) -> dict[str, Any]:
    ts = datetime(2026, 11, 2, 9, tzinfo=UTC) + timedelta(minutes=minute)
    return {"id": id_, "ts": ts, "source": "files", "kind": "file.modified",
            "subject": f"/notes/{id_}.md", "title": id_, "text": text, "attrs": "{}",
            "doc": f"{id_}\n{text}", "vector": [random.random() for _ in range(384)],
            "device": "", "user": ""}


def memory(store: Store, id_: str, minute: int) -> dict[str, Any]:
    ts = datetime(2026, 11, 2, 9, tzinfo=UTC) + timedelta(minutes=minute)
    row: dict[str, Any] = {
        "id": id_, "ts": ts, "ts_end": ts, "level": "chunk", "source": "files",
        "title": id_, "text": f"memory {id_}", "event_ids": [], "model": "test",
        "created": datetime.now(UTC), "doc": f"memory {id_}",
        "vector": [random.random() for _ in range(384)], "project": "", "sources": [],
        "device": "", "user": ""}
    for name in ("identifiers", "entities", "decisions", "open_tasks", "dates"):
        row[name] = []
    return row


def main() -> int:
    cfg_path, worker, go, rounds = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), \
        int(sys.argv[4])
    cfg = load_config(Path(cfg_path))
    deadline = time.monotonic() + 300
    while not go.exists():
        if time.monotonic() > deadline:
            print("never saw the go file", file=sys.stderr)
            return 2
        time.sleep(0.002)
    store = open_store(cfg, 384, EMBEDDER)  # the creation (or migration) race
    kept: list[str] = []
    deleted: list[str] = []
    for r in range(rounds):
        ids = [f"w{worker}-r{r}-{i}" for i in range(PER_ROUND)]
        store.upsert_events([event(i, r, f"round {r} of writer {worker}") for i in ids]
                            + [event(f"shared-r{r}", r, "every writer writes this")])
        store.upsert_memories([memory(store, f"m-w{worker}-r{r}", r)])
        gone = ids[0]
        store.delete("events", f"id = {sql_str(gone)}", path="forget")
        deleted.append(gone)
        kept += ids[1:] + [f"shared-r{r}"]
        if r % 2 and "optimize" in MODES:
            store.optimize()
        if r % 3 == 2 and "purge" in MODES:
            store.purge()
    print(json.dumps({"worker": worker, "kept": kept, "deleted": deleted,
                      "memories": [f"m-w{worker}-r{r}" for r in range(rounds)],
                      "conflicts": conflict_counts()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
