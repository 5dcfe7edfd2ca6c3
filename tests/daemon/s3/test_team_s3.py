"""A team memory: three full daemons (`memoryd run`, each its own data dir, device, user
and files) against one bucket on a real SeaweedFS at once. Every daemon's rows land in
the shared store exactly once with their owner, each daemon finds the others' memory,
owner filters and scoped tokens hold, and a secret in one daemon's files never reaches
the bucket (every object is scanned)."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import tomli_w

from daemon.config import load_config
from daemon.store.lance import open_store
from tests.conftest import run_cli
from tests.daemon.s3.conftest import BUCKET, Weed

EMBEDDER = "all-minilm-l6-v2"
PREFIX = "team-daemons"  # its own: test_store_s3 writes under "team"
# (device, user, a word only that person's files hold)
TEAM = (("laptop", "alice", "quillfeather"), ("desk", "bob", "marrowgloom"),
        ("ci", "carol", "tinderwhisk"))
AWS_KEY = "AKIAZ3MEMORYDTEST777"
PASSWORD = "hunter2bucketleak"
CONTROL = "plumcrestvane"  # beside the secrets in the same file: it must reach the bucket


def _daemon_config(tmp: Path, s3: Weed, models_dir: Path, device: str, user: str,
                   word: str, summarize: bool) -> tuple[Path, Path]:
    root = tmp / f"{user}-src"
    root.mkdir()
    for i in range(2):
        (root / f"{word}-{i}.md").write_text(f"The {word} plan of {user}, step {i}.\n")
    if user == "alice":  # a secret pasted into a note: it must be redacted before upload
        (root / "deploy-notes.txt").write_text(
            f"deploy notes {CONTROL}\nAWS_ACCESS_KEY_ID {AWS_KEY}\npassword = {PASSWORD}\n")
    data = tmp / f"{user}-data"
    table: dict[str, Any] = {
        "data_dir": str(data),
        "collectors": {"files": {"roots": [str(root)]}, "browser": {"enabled": False},
                       "shell": {"enabled": False}},
        "api": {"port": 0}, "models": {"dir": str(models_dir)},
        "identity": {"device": device, "user": user},
        "store": s3.store_section(PREFIX, refresh_seconds=0),
        "pipeline": {"summarize": summarize, "chunk_close_after_seconds": 1.0},
        "compaction": {"enabled": False, "yield_cpu_percent": 0, "yield_on_battery": False},
    }
    path = tmp / f"{user}.toml"
    path.write_text(tomli_w.dumps(table))
    return path, data


def _search(d: Any, token: str, **params: Any) -> Any:
    with d.tcp() as c:
        return c.get("/v1/memory/search", params=params,
                     headers={"Authorization": f"Bearer {token}"})


def _hits(d: Any, token: str, **params: Any) -> list[dict[str, Any]]:
    r = _search(d, token, **params)
    assert r.status_code == 200, r.text
    return list(r.json()["results"])


def test_three_daemons_share_one_bucket_with_owners_filters_tokens_and_no_secret(
        tmp_path: Path, models_dir: Path, s3: Weed, start_daemon: Any) -> None:
    configs = {user: _daemon_config(tmp_path, s3, models_dir, device, user, word,
                                    summarize=(user == "alice"))
               for device, user, word in TEAM}
    # the first daemon set up the bucket's tables (creating a table is not what is tested)
    open_store(load_config(configs["alice"][0]), 384, EMBEDDER)
    daemons = {user: start_daemon(path, data) for user, (path, data) in configs.items()}

    # every daemon finds every teammate's memory, and says whose it is
    deadline = time.monotonic() + 420
    for user, d in daemons.items():
        for device, owner, word in TEAM:
            while not any(word in h["text"] and (h["device"], h["user"]) == (device, owner)
                          for h in _hits(d, d.token, q=word, k=10)):
                assert time.monotonic() < deadline, (user, word, d.log.read_text()[-3000:])
                time.sleep(1)

    # the shared store holds every daemon's rows exactly once, each with its owner
    store = open_store(load_config(configs["bob"][0]), 384, EMBEDDER)
    rows = store.events.to_arrow().select(["id", "subject", "device", "user"]).to_pylist()
    assert len(rows) == len({r["id"] for r in rows}), "an event was stored twice"
    by_subject = Counter(r["subject"] for r in rows)
    for device, user, _ in TEAM:
        mine = {r["subject"] for r in rows if (r["device"], r["user"]) == (device, user)}
        expected = {str(p) for p in (tmp_path / f"{user}-src").iterdir()}
        assert mine == expected, (user, mine)
        assert all(by_subject[s] == 1 for s in expected)
    # alice's daemon summarizes: its chunk memory is stored once, under her name
    deadline = time.monotonic() + 600
    while not (mems := store.memory_rows("level = 'chunk'", ["id", "device", "user"])):
        assert time.monotonic() < deadline, daemons["alice"].log.read_text()[-3000:]
        time.sleep(2)
    assert {(m["device"], m["user"]) for m in mems} == {("laptop", "alice")}
    assert len(mems) == len({m["id"] for m in mems})

    # owner filters, through bob's daemon
    bob = daemons["bob"]
    from_laptop = _hits(bob, bob.token, q="plan", k=20, device="laptop")
    assert from_laptop and {h["device"] for h in from_laptop} == {"laptop"}
    from_carol = _hits(bob, bob.token, q="plan", k=20, user="carol")
    assert from_carol and {h["user"] for h in from_carol} == {"carol"}
    assert any("tinderwhisk" in h["text"] for h in from_carol)

    # scoped tokens: bob's own (the default) and one for alice and carol (with
    # memory:raw, so the owner filter is tested on raw events too)
    def token(*args: str) -> str:
        out = run_cli(configs["bob"][0], "token", "create", "--scope", "memory:read",
                      "--scope", "memory:raw", "--json", *args)
        return str(json.loads(out.stdout)["token"])

    own, others = token("--name", "own"), token("--name", "others", "--users", "alice,carol")
    seen = _hits(bob, own, q="quillfeather plan", k=20)
    assert seen and {h["user"] for h in seen} == {"bob"}
    assert all("quillfeather" not in h["text"] for h in seen)
    assert _search(bob, own, q="plan", user="alice").status_code == 403
    seen = _hits(bob, others, q="marrowgloom plan", k=20)
    assert seen and {h["user"] for h in seen} <= {"alice", "carol"}
    assert all("marrowgloom" not in h["text"] for h in seen)

    # only redacted data was uploaded: scan every object of the shared store
    client = s3.client()
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET,
                                                                 Prefix=PREFIX + "/"):
        keys += [o["Key"] for o in page.get("Contents", [])]
    assert keys
    control = 0
    for key in keys:
        body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert AWS_KEY.encode() not in body and PASSWORD.encode() not in body, key
        control += body.count(CONTROL.encode())
    # the scan sees uploaded text as it is: the word beside the secrets is there
    assert control, "the scan found no uploaded text; it would miss a secret too"
    [note] = [r for r in store.events.to_arrow().to_pylist() if r["subject"].endswith("deploy-notes.txt")]
    assert "[REDACTED" in note["text"] and CONTROL in note["text"]


def test_an_older_store_in_a_bucket_migrates_its_rows_ownerless_and_keeps_the_key(
        tmp_path: Path, models_dir: Path, s3: Weed, caplog: Any) -> None:
    """Rows a bucket held before owners may be anyone's: the daemon that migrates them
    first must not claim them, so they stay ownerless (readable by unrestricted readers
    only) and the table keeps the primary key concurrent writers rely on."""
    from datetime import UTC, datetime

    import lancedb
    import pyarrow as pa

    from daemon.store.objectstore import store_settings
    from daemon.owners import Owners
    from daemon.recall.search import Filters
    from daemon.store.lance import SCHEMA_VERSION, Store, memories_schema, with_primary_key

    path = tmp_path / "c.toml"
    path.write_text(tomli_w.dumps({"data_dir": str(tmp_path / "d"),
                                   "store": s3.store_section("legacy")}))
    settings = store_settings(load_config(path).store)
    old = pa.schema([f for f in with_primary_key(memories_schema(384, EMBEDDER))
                     if f.name not in ("device", "user")],
                    metadata={"memoryd.schema_version": "2", "memoryd.embedder": EMBEDDER})
    when = datetime(2026, 11, 20, 9, tzinfo=UTC)
    lancedb.connect(settings.uri, storage_options=settings.storage_options()).create_table(
        "memories", schema=old, data=pa.Table.from_pylist(schema=old, mapping=[{
            "id": "m1", "ts": when, "ts_end": when, "level": "chunk", "source": "files",
            "title": "t", "text": "an old shared note", "event_ids": [], "model": "q",
            "created": when, "doc": "an old shared note", "vector": [0.1] * 384,
            "project": "", "sources": [], "identifiers": [], "entities": [], "decisions": [],
            "open_tasks": [], "dates": []}]))
    store = Store(settings.uri, 384, EMBEDDER, storage_options=settings.storage_options(),
                  refresh_seconds=0, owner=("laptop", "alice"))
    [row] = store.memory_rows("id = 'm1'")
    assert (row["device"], row["user"], row["text"]) == ("", "", "an old shared note")
    assert store.memories.schema.metadata[b"memoryd.schema_version"] == SCHEMA_VERSION.encode()
    key = store.memories.schema.field("id").metadata or {}
    assert key.get(b"lance-schema:unenforced-primary-key") == b"true"
    assert "predates owners" in caplog.text
    alice = Filters(users=Owners(users=("alice",)).users).where("memories")
    assert store.ids("memories", alice or "true") == []  # not claimed by the migrator
    assert store.ids("memories", "true") == ["m1"]
