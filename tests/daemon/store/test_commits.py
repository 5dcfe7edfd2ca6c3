"""The reader sees the worker's commits through `CommitWatch` (daemon/store/commits.py):
a table is checked out again exactly when another writer committed to it, however close
together the commits come. Real LanceDB: the writer is a second connection to the same
folder (nothing is shared between the two but the files, as between two processes)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from collectors.base import Event
from daemon.store.commits import CommitWatch
from daemon.store.lance import Store, event_row

DIMS = 8


def rows(n: int, start: int = 0, dims: int = DIMS) -> list[dict]:
    vecs = np.random.default_rng(start).normal(size=(n, dims)).astype(np.float32)
    return [event_row(Event.new(ts=1_763_000_000 + i, source="files", kind="file.modified",
                                subject=f"/notes/n{i}.md", title=f"n{i}.md",
                                text=f"note {i} about the quokka ferry"), v.tolist())
            for i, v in zip(range(start, start + n), vecs, strict=True)]


def tables(store: Store) -> dict:
    return {"events": store.events, "memories": store.memories}


def test_a_commit_is_seen_and_nothing_is_checked_out_without_one(tmp_path: Path) -> None:
    writer = Store(tmp_path, DIMS, "test")
    writer.upsert_events(rows(3))
    reader = Store(tmp_path, DIMS, "test")  # read_consistency_interval None: never by itself
    watch = CommitWatch(tmp_path)
    watch.refresh(tables(reader))
    assert reader.counts()["events"] == 3

    writer.upsert_events(rows(2, start=3))
    assert reader.counts()["events"] == 3  # LanceDB alone does not see it
    assert watch.refresh(tables(reader)) >= 1
    assert reader.counts()["events"] == 5

    # once the folder's time is older than a tick, an unchanged table costs no checkout
    time.sleep(0.1)
    watch.refresh(tables(reader))
    assert watch.refresh(tables(reader)) == 0


def test_commits_inside_one_clock_tick_are_not_missed(tmp_path: Path) -> None:
    writer = Store(tmp_path, DIMS, "test")
    writer.upsert_events(rows(1))
    reader = Store(tmp_path, DIMS, "test")
    watch = CommitWatch(tmp_path)
    for i in range(1, 10):  # a check between every two commits, as fast as they come
        writer.upsert_events(rows(1, start=i))
        watch.refresh(tables(reader))
        assert reader.counts()["events"] == i + 1

    # A file system whose clock ticks coarsely gives two commits in one tick the same
    # folder time (this machine's ticks are finer: the times are set by hand here).
    versions = tmp_path / "events.lance" / "_versions"
    tick = time.time_ns()
    os.utime(versions, ns=(tick, tick))
    watch.refresh(tables(reader))  # checked out at a time too recent to trust
    writer.upsert_events(rows(1, start=10))
    os.utime(versions, ns=(tick, tick))  # the next commit, in the same tick
    watch.refresh(tables(reader))
    assert reader.counts()["events"] == 11


def test_without_a_versions_folder_every_call_checks_out(tmp_path: Path) -> None:
    store = Store(tmp_path / "store", DIMS, "test")
    watch = CommitWatch(tmp_path / "elsewhere")  # no table folders there
    assert watch.refresh(tables(store)) == 2
    assert watch.refresh(tables(store)) == 2


def test_rewritten_indexes_are_told_apart_from_plain_commits(tmp_path: Path) -> None:
    """The worker's optimize writes the indexes anew (new ids in `_indices`): the reader
    then reopens the store, so LanceDB's caches do not fill with superseded indexes."""
    writer = Store(tmp_path, DIMS, "test", optimize_rows=10**9)
    writer.upsert_events(rows(5))
    reader = Store(tmp_path, DIMS, "test")
    watch = CommitWatch(tmp_path)
    watch.refresh(tables(reader))
    writer.upsert_events(rows(5, start=5))  # a commit, the indexes as they were
    watch.refresh(tables(reader))
    assert not watch.indexes_changed and reader.counts()["events"] == 10
    writer.optimize()  # the new rows folded into the full-text index
    watch.refresh(tables(reader))
    assert watch.indexes_changed


def test_the_reader_reopens_the_store_when_the_indexes_were_rewritten(make_config) -> None:
    from daemon.config import load_config
    from daemon.store.engine import Engine
    from daemon.store.reader import Reader

    cfg = load_config(make_config())
    worker = Engine(cfg)
    worker.store.upsert_events(rows(5, dims=384))
    reader = Reader(cfg)
    first = reader.store
    worker.store.upsert_events(rows(5, start=5, dims=384))
    assert reader.store is first and reader.counts()["events"] == 10  # a plain commit
    worker.store.optimize()
    reopened = reader.store
    assert reopened is not first and reader.counts()["events"] == 10
    assert reader.store is reopened  # once
    reader.close()
    worker.close()
