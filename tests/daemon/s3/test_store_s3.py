"""The LanceDB store on a real SeaweedFS S3 gateway: index and hybrid search through the
real Engine with real embeddings, several writer processes at once, and the gateway
killed mid-write and restarted."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collectors.base import Event
from daemon.config import config_as_dict
from daemon.store.engine import Engine
from daemon.errors import ConfigError
from daemon.store.objectstore import ObjectStoreUnavailable
from daemon.store.lance import open_store
from tests.daemon.s3.conftest import BUCKET, SECRET_KEY, Weed, write_config
from tests.daemon.s3.writer import PER_BATCH, memory
from tests.daemon.sync.conftest import TOPICS, vectors  # noqa: F401 - a session fixture

ROOT = Path(__file__).resolve().parents[3]


def events(n: int, prefix: str) -> list[Event]:
    base = datetime(2026, 11, 3, 9, tzinfo=UTC)
    return [Event.new(ts=base + timedelta(minutes=i), source="files", kind="file.modified",
                      subject=f"/home/dev/src/{prefix}/{i}.py", title=f"{prefix} {i}",
                      text=TOPICS[i % len(TOPICS)]) for i in range(n)]


def keys(s3: Weed, prefix: str) -> list[str]:
    out = s3.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/")
    return [o["Key"] for o in out.get("Contents", [])]


def test_the_engine_indexes_and_searches_a_store_on_object_storage(
        tmp_path: Path, models_dir: Path, s3: Weed) -> None:
    cfg = write_config(tmp_path / "a.toml", tmp_path / "a", models_dir,
                       store=s3.store_section("engine"))
    engine = Engine(cfg)
    assert engine.index(events(16, "crm")) == 16
    assert engine.store.remote and engine.store.counts()["events"] == 16
    # the tables live in the bucket; the data dir holds no store folder
    assert any(k.startswith("engine/events.lance/") for k in keys(s3, "engine"))
    assert not (cfg.data_path / "store").exists()

    hits = engine.search("lead scoring budget weight", k=3)  # vector + full-text
    assert hits and "lead scoring" in hits[0].text
    assert engine.store.text_search("events", "tokenizer", 5)[0].text == TOPICS[1]

    # a second daemon opening the same bucket sees the same memory; re-indexing the
    # same events (a journal replay) changes nothing
    other = Engine(cfg)
    other.index(events(16, "crm"))
    assert other.store.counts()["events"] == 16
    assert engine.store.counts()["events"] == 16


def test_the_secret_key_is_never_printed_and_bad_settings_say_what_to_fix(
        tmp_path: Path, models_dir: Path, s3: Weed, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write_config(tmp_path / "a.toml", tmp_path / "a", models_dir,
                       store={**s3.store_section("x"), "secret_access_key": SECRET_KEY,
                              "secret_access_key_env": ""})
    printed = json.dumps(config_as_dict(cfg))
    assert SECRET_KEY not in printed and '"secret_access_key": "***"' in printed
    monkeypatch.delenv("MEMORYD_TEST_S3_SECRET")
    bare = write_config(tmp_path / "b.toml", tmp_path / "b", models_dir,
                        store={**s3.store_section("x"), "secret_access_key_env": ""})
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID"):
        open_store(write_config(tmp_path / "c.toml", tmp_path / "c", models_dir,
                                store={"uri": "s3://b/p", "endpoint": s3.endpoint,
                                       "allow_http": True}), 384, "all-minilm-l6-v2")
    with pytest.raises(ConfigError, match="allow_http"):
        open_store(write_config(tmp_path / "d.toml", tmp_path / "d", models_dir,
                                store={**s3.store_section("x"), "allow_http": False}),
                   384, "all-minilm-l6-v2")
    assert bare.store.secret_access_key == ""


def test_several_writer_processes_at_once_lose_and_duplicate_nothing(
        tmp_path: Path, models_dir: Path, s3: Weed, vectors: list[list[float]]) -> None:  # noqa: F811
    cfg_path = tmp_path / "shared.toml"
    cfg = write_config(cfg_path, tmp_path / "a", models_dir, store=s3.store_section("team"))
    open_store(cfg, 384, "all-minilm-l6-v2")  # the first daemon creates the tables
    vec_path = tmp_path / "vectors.json"
    vec_path.write_text(json.dumps(vectors))
    writers, batches = 3, 10
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-m", "tests.daemon.s3.writer", str(cfg_path),
                               str(vec_path), str(w), str(batches), str(go), str(writers)],
                              cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for w in range(writers)]
    # barriers (tests/daemon/s3/writer.py): every writer has opened the store before any
    # writes, and has committed once before any goes on, so on a quiet machine too they
    # commit at the same time instead of one after another
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready", \
            p.stderr.read() if p.stderr else ""
    go.touch()
    spans = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        stamps = [float(line.split()[3]) for line in out.splitlines() if "committed" in line]
        assert len(stamps) == batches
        spans.append((stamps[0], stamps[-1]))
    # the writers really overlapped: every one committed while the others were committing
    assert max(s for s, _ in spans) < min(e for _, e in spans), spans

    store = open_store(cfg, 384, "all-minilm-l6-v2")
    id_meta = store.memories.schema.field("id").metadata or {}
    assert id_meta.get(b"lance-schema:unenforced-primary-key") == b"true"
    ids = store.memories.to_arrow().column("id").to_pylist()
    expected = {f"w{w}-{b}-{i}" for w in range(writers) for b in range(batches)
                for i in range(PER_BATCH)} | {f"shared-{b}" for b in range(batches)}
    assert len(ids) == len(set(ids)), "an id was inserted twice"
    assert set(ids) == expected
    # every shared row is whole: one writer's version, not a mix
    for r in store.memory_rows("id LIKE 'shared-%'"):
        assert r["title"] == r["text"][:40] and r["text"].startswith(f"shared note {r['id'][7:]}")
    assert store.text_search("memories", "worker", 200)  # the index still answers


def test_seaweedfs_killed_mid_write_loses_nothing_and_errors_clearly_while_down(
        tmp_path: Path, models_dir: Path, s3: Weed, vectors: list[list[float]]) -> None:  # noqa: F811
    cfg = write_config(tmp_path / "a.toml", tmp_path / "a", models_dir,
                       store=s3.store_section("outage"))
    store = open_store(cfg, 384, "all-minilm-l6-v2")
    batches = [[memory(store, f"b{b}-{i}", f"outage batch {b} note {i}", vectors[i % 8], i)
                for i in range(20)] for b in range(12)]
    committed: list[int] = []
    errors: list[str] = []
    killed = threading.Event()

    def write_all() -> None:
        # what the pipeline does: a batch that fails stays in the journal and is retried
        for b, rows in enumerate(batches):
            deadline = time.monotonic() + 240
            while True:
                try:
                    store.upsert_memories(rows)
                    committed.append(b)
                    break
                except ObjectStoreUnavailable as exc:
                    errors.append(str(exc))
                    assert time.monotonic() < deadline, exc
                    time.sleep(0.5)

    writer = threading.Thread(target=write_all)
    writer.start()
    while len(committed) < 3 and writer.is_alive():
        time.sleep(0.01)
    s3.kill()  # mid-stream: the next commit is in flight or about to be
    killed.set()
    deadline = time.monotonic() + 120
    while not errors and time.monotonic() < deadline:
        time.sleep(0.1)
    assert errors, "a write against a dead gateway did not fail"
    assert "Nothing was committed" in errors[0] and "outage" in errors[0]
    s3.start()
    writer.join(timeout=300)
    assert not writer.is_alive() and committed == list(range(12))

    fresh = open_store(cfg, 384, "all-minilm-l6-v2")  # as another daemon, after the outage
    ids = fresh.memories.to_arrow().column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 240
    assert set(ids) == {f"b{b}-{i}" for b in range(12) for i in range(20)}
    hits = fresh.vector_search("memories", vectors[3], 5)
    assert hits and all(h.text.startswith("outage batch") for h in hits)
    assert fresh.text_search("memories", "outage", 300)


def test_while_the_bucket_is_down_the_pipeline_keeps_events_in_the_journal_and_catches_up(
        tmp_path: Path, models_dir: Path, s3: Weed) -> None:
    from collectors.base import Batch
    from daemon.intake.journal import Journal
    from daemon.pipeline.steps import Pipeline

    cfg = write_config(tmp_path / "a.toml", tmp_path / "a", models_dir,
                       store=s3.store_section("pipeline"))
    cfg.data_path.mkdir(parents=True)
    journal = Journal(cfg.data_path / "journal.sqlite3")
    engine = Engine(cfg)
    pipeline = Pipeline(cfg, journal, engine)
    journal.append(Batch("files", events(6, "before")))
    assert pipeline.index_step() == 6
    s3.kill()
    try:
        journal.append(Batch("files", events(5, "during")))  # capture goes on locally
        with pytest.raises(ObjectStoreUnavailable, match="retried when the object storage"):
            pipeline.index_step()
        assert journal.counts()["new"] == 5 and journal.counts()["indexed"] == 6
    finally:
        s3.start()
    deadline = time.monotonic() + 60
    while True:  # the daemon's scheduled job: try again until the bucket answers
        try:
            assert pipeline.index_step() == 5
            break
        except ObjectStoreUnavailable:
            assert time.monotonic() < deadline
            time.sleep(1)
    assert journal.counts()["new"] == 0 and engine.store.counts()["events"] == 11
    assert "during" in engine.search("during", k=3)[0].title
