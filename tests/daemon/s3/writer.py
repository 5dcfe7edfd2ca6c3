"""One writer process for the concurrency tests: opens the store the config names (on
SeaweedFS) and upserts `batches` batches of memories: ids of its own plus one id every
writer also writes in the same batch. Prints one line per committed batch.

    python -m tests.daemon.s3.writer CONFIG VECTORS_JSON WORKER BATCHES [GO_FILE WRITERS]

With GO_FILE it opens the store, prints `ready`, and waits for GO_FILE to exist before
its first write; after its first commit it waits for all WRITERS to have made theirs
(`GO_FILE.first-N` files). So every writer's later batches run while the others write,
whatever the machine's load: one fast writer cannot finish before another starts.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from daemon.config import load_config
from daemon.store.lance import Store, open_store

EMBEDDER = "all-minilm-l6-v2"
PER_BATCH = 6


def memory(store: Store, id_: str, text: str, vector: list[float], minute: int) -> dict[str, Any]:
    ts = datetime(2026, 11, 2, 9, tzinfo=UTC) + timedelta(minutes=minute)
    row: dict[str, Any] = {
        "id": id_, "ts": ts, "ts_end": ts + timedelta(seconds=50), "level": "chunk",
        "source": "files", "title": text[:40], "text": text, "event_ids": [f"{id_}-ev"],
        "model": "test", "created": datetime.now(UTC), "doc": text, "vector": vector,
    }
    for f in store.memories.schema:  # whatever columns the table has now
        if f.name not in row:
            row[f.name] = [] if pa.types.is_list(f.type) else (
                "" if pa.types.is_string(f.type) else None)
    return row


def wait_for(done: Any, what: str) -> bool:
    deadline = time.monotonic() + 300
    while not done():
        if time.monotonic() > deadline:
            print(f"never saw {what}", file=sys.stderr)
            return False
        time.sleep(0.005)
    return True


def main() -> int:
    cfg_path, vec_path, worker, batches = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    vectors = json.loads(open(vec_path).read())
    store = open_store(load_config(cfg_path), 384, EMBEDDER)
    go = sys.argv[5] if len(sys.argv) > 6 else ""
    writers = int(sys.argv[6]) if go else 1
    if go:
        print("ready", flush=True)
        if not wait_for(lambda: os.path.exists(go), "the go file"):
            return 1
    for b in range(batches):
        if go and b == 1:  # the mid barrier: every writer has committed once
            open(f"{go}.first-{worker}", "w").close()
            if not wait_for(lambda: all(os.path.exists(f"{go}.first-{w}")
                                        for w in range(writers)), "every first commit"):
                return 1
        rows = [memory(store, f"w{worker}-{b}-{i}", f"worker {worker} batch {b} note {i}",
                       vectors[(worker + i) % len(vectors)], b * 10 + i)
                for i in range(PER_BATCH)]
        rows.append(memory(store, f"shared-{b}", f"shared note {b} last written by worker {worker}",
                           vectors[b % len(vectors)], b * 10 + 9))
        store.upsert_memories(rows)
        print(f"committed {worker} {b} {time.time():.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
