"""The commit-conflict race on a real SeaweedFS bucket: writer processes started at the
same instant on a new prefix (creating and indexing the tables together), and on a
prefix holding an older schema (migrating it together: one migrates, the others wait
and use its table). Nothing fails, nothing is lost or doubled."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import lancedb
import pyarrow as pa

from daemon.config import load_config
from daemon.store.lance import SCHEMA_VERSION, memories_schema, open_store, with_primary_key
from daemon.store.objectstore import store_settings
from tests.daemon.s3.conftest import Weed
from tests.daemon.store.test_store_conflicts import EMBEDDER, check, config, race


def test_writers_started_at_once_on_a_new_bucket_prefix_lose_and_duplicate_nothing(
        tmp_path: Path, s3: Weed) -> None:
    configs = [config(tmp_path, n, **s3.store_section("race-new")) for n in range(3)]
    reports = race(tmp_path, configs, rounds=6)
    check(open_store(load_config(configs[0]), 384, EMBEDDER), reports)


def test_daemons_started_at_once_on_an_older_schema_migrate_it_once(
        tmp_path: Path, s3: Weed) -> None:
    configs = [config(tmp_path, n, **s3.store_section("race-old")) for n in range(3)]
    settings = store_settings(load_config(configs[0]).store)
    old = pa.schema([f for f in with_primary_key(memories_schema(384, EMBEDDER))
                     if f.name not in ("device", "user")],
                    metadata={"memoryd.schema_version": "2", "memoryd.embedder": EMBEDDER})
    when = datetime(2026, 11, 20, 9, tzinfo=UTC)
    lancedb.connect(settings.uri, storage_options=settings.storage_options()).create_table(
        "memories", schema=old, data=pa.Table.from_pylist(schema=old, mapping=[{
            "id": f"old{i}", "ts": when, "ts_end": when, "level": "chunk", "source": "files",
            "title": "t", "text": "an old shared note", "event_ids": [], "model": "q",
            "created": when, "doc": "an old shared note", "vector": [0.1] * 384,
            "project": "", "sources": [], "identifiers": [], "entities": [],
            "decisions": [], "open_tasks": [], "dates": []} for i in range(5)]))
    logs: list[str] = []
    reports = race(tmp_path, configs, rounds=3, logs=logs)
    assert sum(log.count("migrating the store's memories table") for log in logs) == 1, logs
    store = open_store(load_config(configs[0]), 384, EMBEDDER)
    for r in reports:  # the old rows are kept beside the racers' own
        r["memories"] = r["memories"] + ([f"old{i}" for i in range(5)] if not r["worker"]
                                         else [])
    check(store, reports)
    assert store.memories.schema.metadata[b"memoryd.schema_version"] == SCHEMA_VERSION.encode()
