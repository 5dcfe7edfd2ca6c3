"""A store written by schema 1 is migrated when opened, losing nothing; a daemon that
waits for another's migration writes nothing to the old table meanwhile."""

from __future__ import annotations

import fcntl
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import lancedb
import pyarrow as pa

from daemon.store.lance import SCHEMA_VERSION, Store

TS = pa.timestamp("us", tz="UTC")


def _v1_store(path: Path) -> None:
    """Build the store exactly as memoryd 0.1 (schema 1) wrote it."""
    meta = {"memoryd.schema_version": "1", "memoryd.embedder": "all-minilm-l6-v2"}
    vec = pa.list_(pa.float32(), 384)
    events = pa.schema([("id", pa.string()), ("ts", TS), ("source", pa.string()),
                        ("kind", pa.string()), ("subject", pa.string()), ("title", pa.string()),
                        ("text", pa.string()), ("attrs", pa.string()), ("doc", pa.string()),
                        ("vector", vec)], metadata=meta)
    memories = pa.schema([("id", pa.string()), ("ts", TS), ("ts_end", TS),
                          ("level", pa.string()), ("source", pa.string()),
                          ("title", pa.string()), ("text", pa.string()),
                          ("event_ids", pa.list_(pa.string())), ("model", pa.string()),
                          ("created", TS), ("doc", pa.string()), ("vector", vec)],
                         metadata=meta)
    when = datetime(2026, 11, 24, 9, tzinfo=UTC)
    db = lancedb.connect(str(path))
    db.create_table("events", data=[{
        "id": "e1", "ts": when, "source": "files", "kind": "file.modified",
        "subject": "/src/crm/score.py", "title": "score.py", "text": "x", "attrs": "{}",
        "doc": "score.py /src/crm/score.py", "vector": [0.1] * 384}], schema=events)
    db.create_table("memories", data=[{
        "id": "m1", "ts": when, "ts_end": when, "level": "chunk", "source": "files",
        "title": "files: score.py", "text": "Edited the lead score in score.py.",
        "event_ids": ["e1"], "model": "qwen", "created": when,
        "doc": "Edited the lead score in score.py.", "vector": [0.1] * 384}], schema=memories)


def test_a_schema_1_store_is_migrated_in_place_and_keeps_every_row(tmp_path: Path) -> None:
    _v1_store(tmp_path / "store")
    store = Store(tmp_path / "store", 384, "all-minilm-l6-v2")
    assert store.counts() == {"events": 1, "memories": 1}
    [row] = store.memory_rows("id = 'm1'")
    assert row["text"] == "Edited the lead score in score.py." and row["event_ids"] == ["e1"]
    assert row["project"] == "" and row["sources"] == [] and row["identifiers"] == []
    assert store.text_search("memories", "lead score", 3)[0].id == "m1"  # index rebuilt
    assert store.text_search("events", "score.py", 3)[0].id == "e1"
    for table in (store.events, store.memories):
        assert table.schema.metadata[b"memoryd.schema_version"] == SCHEMA_VERSION.encode()
    again = Store(tmp_path / "store", 384, "all-minilm-l6-v2")  # a second open: nothing to do
    assert again.counts() == {"events": 1, "memories": 1}


def _waiting_on_a_lock() -> bool:
    """Whether some process or thread is blocked on a file lock (/proc/locks: "->")."""
    return "->" in Path("/proc/locks").read_text()


def test_a_daemon_waiting_for_another_s_migration_writes_nothing_to_the_old_table(
        tmp_path: Path) -> None:
    # Building the full-text index of the old table while another daemon rewrites it made
    # that rewrite's commit conflict (seen as two migrations in the three-daemon race).
    _v1_store(tmp_path / "store")
    opened: list[Store] = []
    with open(tmp_path / "store" / ".migrating-events.lock", "a+") as lease:
        fcntl.flock(lease, fcntl.LOCK_EX)  # "another daemon" is migrating the events table
        opener = threading.Thread(target=lambda: opened.append(
            Store(tmp_path / "store", 384, "all-minilm-l6-v2")))
        opener.start()
        deadline = time.monotonic() + 60
        while not _waiting_on_a_lock() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _waiting_on_a_lock(), "the opening daemon never waited for the lease"
        old = lancedb.connect(str(tmp_path / "store")).open_table("events")
        assert old.version == 1 and old.list_indices() == []  # untouched while it waits
        fcntl.flock(lease, fcntl.LOCK_UN)
    opener.join(timeout=120)
    [store] = opened
    assert store.text_search("events", "score.py", 3)[0].id == "e1"  # migrated, indexed
    assert store.events.schema.metadata[b"memoryd.schema_version"] == SCHEMA_VERSION.encode()
