"""Whose memory is whose: every row records its device and user, reads filter by them,
and scoped tokens decide who reads whose memory, on every read path (real LanceDB, real
embedder, a real daemon; the chat model is a real HTTP upstream that records its
prompts)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx2
import lancedb
import openai
import pyarrow as pa
import pytest
import tomli_w
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from collectors.base import Event
from daemon.api.scoped_tokens import TokenStore
from daemon.config import load_config
from daemon.errors import ConfigError
from daemon.owners import OwnerForbidden, Owners, default_device, default_user, whose
from daemon.store.engine import Engine
from daemon.store.lance import SCHEMA_VERSION, Store
from tests.conftest import run_cli
from tests.daemon.upstream_fixtures import model_entry

ALICE_WORD = "quillfeather"  # in alice's files only
BOB_WORD = "marrowgloom"  # in bob's events only


def _config(path: Path, data_dir: Path, models_dir: Path, device: str, user: str,
            **sections: Any) -> Path:
    table: dict[str, Any] = {
        "data_dir": str(data_dir),
        "collectors": {"files": {"roots": []}, "browser": {"enabled": False},
                       "shell": {"enabled": False}},
        "api": {"port": 0}, "models": {"dir": str(models_dir)},
        "pipeline": {"summarize": False}, "identity": {"device": device, "user": user},
        **sections,
    }
    path.write_text(tomli_w.dumps(table))
    return path


def _events(word: str, who: str, n: int = 3) -> list[Event]:
    now = datetime.now(UTC).replace(microsecond=0)
    return [Event.new(ts=now - timedelta(minutes=10 - i), source="files",
                      kind="file.modified", subject=f"/home/{who}/src/{word}/{i}.py",
                      title=f"{word} {i}.py", text=f"{who} worked on the {word} module, part {i}")
            for i in range(n)]


def _memory(store: Store, engine: Engine, word: str, who: str) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    # today's, in the machine's zone (the digests' default day), even just after midnight
    midnight = datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
    start = max(now - timedelta(minutes=10), midnight.astimezone(UTC))
    text = f"{who} refactored the {word} module"
    return {"id": f"m-{who}", "ts": start, "ts_end": max(start, now - timedelta(minutes=5)),
            "level": "chunk", "source": "files", "title": f"files: {word}", "text": text,
            "event_ids": [], "model": "test", "created": now, "doc": text,
            "vector": engine.models.embed([text])[0], "project": word, "sources": [],
            "identifiers": [], "entities": [], "decisions": [], "open_tasks": [], "dates": []}


def _body(pack: dict[str, Any]) -> str:
    """A context pack without its title line (which repeats the query)."""
    return str(pack["markdown"]).split("\n", 1)[1]


def test_identity_defaults_to_the_machine_and_login_and_bad_names_are_refused(
        tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("")
    cfg = load_config(path)
    assert cfg.identity.device == default_device() and cfg.identity.user == default_user()
    assert cfg.identity.device and cfg.identity.user
    path.write_text('[identity]\ndevice = "my laptop!"\n')
    with pytest.raises(ConfigError, match="identity.device"):
        load_config(path)
    path.write_text('[identity]\ndevice = "laptop-2"\nuser = "alice@example.org"\n')
    cfg = load_config(path)
    assert (cfg.identity.device, cfg.identity.user) == ("laptop-2", "alice@example.org")


def test_owner_filters_narrow_a_restriction_and_never_widen_it() -> None:
    alice = Owners(users=("alice",))
    assert whose(alice, None, None) == alice
    assert whose(alice, "laptop", "alice") == Owners(devices=("laptop",), users=("alice",))
    assert whose(alice, None, "alice,bob").users == ("alice",)
    with pytest.raises(OwnerForbidden, match="users alice"):
        whose(alice, None, "bob")
    assert whose(None, None, "*").everyone
    with pytest.raises(ValueError, match="not a valid name"):
        whose(None, "x' OR '1'='1", None)
    assert Owners(devices=(), users=()).where() == "false AND false"  # reads nothing


def test_rows_carry_their_writer_and_every_read_filters_by_owner(
        tmp_path: Path, models_dir: Path) -> None:
    data = tmp_path / "shared"
    alice_cfg = load_config(_config(tmp_path / "a.toml", data, models_dir, "laptop", "alice"))
    bob_cfg = load_config(_config(tmp_path / "b.toml", data, models_dir, "desk", "bob"))
    alice, bob = Engine(alice_cfg), Engine(bob_cfg)
    try:
        alice.index(_events(ALICE_WORD, "alice"))
        bob.index(_events(BOB_WORD, "bob"))
        bob.store.upsert_memories([_memory(bob.store, bob, BOB_WORD, "bob")])
        alice.store.upsert_memories([_memory(alice.store, alice, ALICE_WORD, "alice")])
        alice.store.events.checkout_latest()
        alice.store.memories.checkout_latest()

        owners = {(r["device"], r["user"]) for r in alice.store.events.to_arrow().to_pylist()}
        assert owners == {("laptop", "alice"), ("desk", "bob")}
        [m] = alice.store.memory_rows("id = 'm-bob'")
        assert (m["device"], m["user"]) == ("desk", "bob")

        hits = alice.search(BOB_WORD, k=10)
        assert any(h.user == "bob" and h.device == "desk" for h in hits)
        only_alice = alice.search(BOB_WORD, k=10, users=("alice",))
        assert only_alice and all(h.user == "alice" for h in only_alice)
        assert all(BOB_WORD not in h.text for h in only_alice)
        assert {h.user for h in alice.search(ALICE_WORD, k=10, devices=("desk",))} == {"bob"}

        mine = Owners(users=("alice",))
        assert {h.user for h in alice.recent(50, owners=mine)} == {"alice"}
        assert {h.user for h in alice.recent(50)} == {"alice", "bob"}
        line = alice.timeline(datetime.now(UTC) - timedelta(hours=1), None, owners=mine)
        assert line and {h.user for h in line} == {"alice"}
        day = alice.digest("day", None, owners=mine)
        assert [c["id"] for c in day["children"]] == ["m-alice"]
        assert day["children"][0]["user"] == "alice"
        assert {c["id"] for c in alice.digest("day")["children"]} == {"m-alice", "m-bob"}
        pack = alice.context(f"the {BOB_WORD} module", 1500, owners=mine)
        assert BOB_WORD not in _body(pack) and pack["items"]
        assert all(i["user"] == "alice" for i in pack["items"])
        assert BOB_WORD in _body(alice.context(f"the {BOB_WORD} module", 1500))

        # a forget limited to alice leaves bob's rows alone, even when they match
        out = alice.forget(query="module", owners=mine)
        assert out["events"] == 3 and out["memories"] == 1
        left = alice.store.events.to_arrow().to_pylist()
        assert left and {r["user"] for r in left} == {"bob"}
    finally:
        alice.close()
        bob.close()


def test_a_schema_2_store_is_migrated_and_its_rows_get_the_local_owner(tmp_path: Path) -> None:
    """Schema 2 was written by this daemon alone (a local folder), so its rows are the
    local user's: owner-scoped tokens keep seeing that history."""
    from daemon.store.lance import events_schema, memories_schema

    def v2(schema: pa.Schema) -> pa.Schema:
        keep = [f for f in schema if f.name not in ("device", "user")]
        return pa.schema(keep, metadata={"memoryd.schema_version": "2",
                                         "memoryd.embedder": "all-minilm-l6-v2"})

    when = datetime(2026, 11, 24, 9, tzinfo=UTC)
    db = lancedb.connect(str(tmp_path / "store"))
    db.create_table("events", schema=v2(events_schema(384, "all-minilm-l6-v2")), data=[{
        "id": "e1", "ts": when, "source": "files", "kind": "file.modified",
        "subject": "/src/a.py", "title": "a.py", "text": "x", "attrs": "{}",
        "doc": "a.py /src/a.py", "vector": [0.1] * 384}])
    db.create_table("memories", schema=v2(memories_schema(384, "all-minilm-l6-v2")), data=[{
        "id": "m1", "ts": when, "ts_end": when, "level": "chunk", "source": "files",
        "title": "a", "text": "Edited a.py.", "event_ids": ["e1"], "model": "q",
        "created": when, "doc": "Edited a.py.", "vector": [0.1] * 384, "project": "src",
        "sources": [], "identifiers": ["a.py"], "entities": [], "decisions": [],
        "open_tasks": [], "dates": []}])
    store = Store(tmp_path / "store", 384, "all-minilm-l6-v2", owner=("laptop", "alice"))
    assert store.counts() == {"events": 1, "memories": 1}
    [m] = store.memory_rows("id = 'm1'")
    assert (m["device"], m["user"], m["identifiers"]) == ("laptop", "alice", ["a.py"])
    [e] = store.events.to_arrow().to_pylist()
    assert (e["device"], e["user"]) == ("laptop", "alice")
    for table in (store.events, store.memories):
        assert table.schema.metadata[b"memoryd.schema_version"] == SCHEMA_VERSION.encode()
    assert store.text_search("memories", "Edited", 3)[0].id == "m1"


def test_tokens_read_their_creators_memories_by_default_and_admin_takes_no_owners(
        tmp_path: Path) -> None:
    tokens = TokenStore(tmp_path / "tokens.json")
    row, secret = tokens.create(["memory:read"], "agent", own_user="alice")
    assert row["users"] == ["alice"] and row["devices"] == ["*"]
    assert tokens.scopes(secret) == {"memory:read"}
    assert tokens.owners(secret) == Owners(users=("alice",))
    row, secret = tokens.create(["memory:read"], "team", users="*", devices="laptop,desk",
                                own_user="alice")
    tokens.scopes(secret)
    assert tokens.owners(secret) == Owners(devices=("desk", "laptop"))
    with pytest.raises(ValueError, match="whole store"):
        tokens.create(["admin"], "boss", users="bob")
    row, secret = tokens.create(["sync"], "peer", own_user="alice")
    tokens.scopes(secret)
    assert tokens.owners(secret) == Owners()  # sync moves the whole store
    # a token from before owners has no owner fields: the API reads it as the daemon's own
    data = json.loads((tmp_path / "tokens.json").read_text())
    for r in data["tokens"]:
        r.pop("users"), r.pop("devices")
    (tmp_path / "tokens.json").write_text(json.dumps(data))
    tokens.create(["memory:read"], "touch", own_user="alice")  # rewrites; mtime moves
    assert tokens.scopes(secret) == {"sync"} and tokens.owners(secret) is None


def test_scoped_tokens_decide_who_reads_whose_memory_on_every_read_path(
        tmp_path: Path, models_dir: Path, start_daemon: Any, upstreams: Any) -> None:
    data = tmp_path / "data"
    root = tmp_path / "alice-src"
    root.mkdir()
    (root / "notes.md").write_text(f"The {ALICE_WORD} module is alice's work.\n")
    bob_cfg = load_config(_config(tmp_path / "bob.toml", data, models_dir, "desk", "bob"))
    bob = Engine(bob_cfg)  # bob's daemon wrote to this store before (a shared store)
    bob.index(_events(BOB_WORD, "bob"))
    bob.store.upsert_memories([_memory(bob.store, bob, BOB_WORD, "bob")])
    bob.close()
    local = upstreams("local")
    config = _config(tmp_path / "alice.toml", data, models_dir, "laptop", "alice",
                     collectors={"files": {"roots": [str(root)]}, "browser": {"enabled": False},
                                 "shell": {"enabled": False}},
                     router={"models": [model_entry(local)], "routes": {"default": ["local"]}})
    d = start_daemon(config, data)

    def get(path: str, token: str, **params: Any) -> Any:
        with d.tcp() as c:
            return c.get(path, params=params, headers={"Authorization": f"Bearer {token}"})

    import time
    deadline = time.monotonic() + 240
    # found, and in the store: a search finds a new event in the journal at once, but
    # only stored rows answer the searches below (other words, other tokens)
    while not (any(h["user"] == "alice" and ALICE_WORD in h["text"] for h in get(
            "/v1/memory/search", d.token, q=ALICE_WORD).json().get("results", []))
               and get("/v1/status", d.token).json()["journal"]["new"] == 0):
        assert time.monotonic() < deadline, d.log.read_text()[-3000:]
        time.sleep(1)

    def token(*args: str) -> str:
        out = run_cli(config, "token", "create", "--scope", "memory:read", "--scope",
                      "memory:raw", "--scope", "complete", "--json", *args)
        return str(json.loads(out.stdout)["token"])

    mine, bobs = token("--name", "alice-agent"), token("--name", "bob-agent", "--users", "bob")
    refused = run_cli(config, "token", "create", "--scope", "admin", "--users", "bob",
                      check=False)
    assert refused.returncode == 2 and "whole store" in refused.stderr

    # the admin token reads everyone's, and hits say whose they are
    everyone = get("/v1/memory/search", d.token, q=BOB_WORD).json()["results"]
    assert any(h["user"] == "bob" and h["device"] == "desk" for h in everyone)
    # search: alice's token never sees bob's memory, and cannot ask for it
    found = get("/v1/memory/search", mine, q=BOB_WORD, k=20).json()["results"]
    assert found and all(h["user"] == "alice" and BOB_WORD not in h["text"] for h in found)
    r = get("/v1/memory/search", mine, q=BOB_WORD, user="bob")
    assert r.status_code == 403 and "alice" in r.json()["error"]["message"]
    assert get("/v1/memory/search", mine, q=BOB_WORD, device="desk").json()["results"] == []
    found = get("/v1/memory/search", bobs, q=ALICE_WORD, k=20).json()["results"]
    assert found and all(h["user"] == "bob" for h in found)
    assert any(BOB_WORD in h["text"] for h in
               get("/v1/memory/search", bobs, q=BOB_WORD).json()["results"])
    # context, digest, recent and timeline
    pack = get("/v1/memory/context", mine, query=f"the {BOB_WORD} module").json()
    assert BOB_WORD not in _body(pack)
    assert BOB_WORD in _body(get("/v1/memory/context", bobs, query=BOB_WORD).json())
    day = get("/v1/memory/digest", mine).json()
    assert "m-bob" not in [c["id"] for c in day["children"]]
    assert "m-bob" in [c["id"] for c in get("/v1/memory/digest", d.token).json()["children"]]
    recent = get("/v1/memory/recent", mine, limit=50).json()["results"]
    assert recent and {h["user"] for h in recent} == {"alice"}
    since = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    line = get("/v1/memory/timeline", mine, since=since).json()["results"]
    assert line and {h["user"] for h in line} == {"alice"}
    assert {h["user"] for h in get("/v1/memory/timeline", bobs, since=since)
            .json()["results"]} == {"bob"}

    # completions' memory context: only the token's owners reach the prompt
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{d.port}/v1", api_key=mine,
                           max_retries=0, timeout=120)
    client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "?"}],
                                   extra_body={"memory": {"query": BOB_WORD}})
    prompt = json.dumps(local.stats()["last"]["messages"])
    assert ALICE_WORD in prompt  # the pack was built, of alice's memory only
    assert "bob worked" not in prompt and "bob refactored" not in prompt
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{d.port}/v1", api_key=bobs,
                           max_retries=0, timeout=120)
    out = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "?"}],
        extra_body={"memory": {"query": BOB_WORD}})
    assert (out.model_extra or {})["memory"]["used"]
    assert "bob worked" in json.dumps(local.stats()["last"]["messages"])

    # MCP over HTTP with alice's token (it has memory:raw)
    async def over_mcp(secret: str) -> tuple[str, str]:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {secret}"}, timeout=120)
        async with http, Client(streamable_http_client(f"http://127.0.0.1:{d.port}/mcp",
                                                       http_client=http)) as mcp:
            found = await mcp.call_tool("memory_search", {"query": BOB_WORD, "k": 20})
            recent = await mcp.call_tool("recent_activity", {"limit": 50})
            return (json.dumps([c.text for c in found.content]),
                    json.dumps([c.text for c in recent.content]))

    found_text, recent_text = anyio.run(over_mcp, mine)
    assert ALICE_WORD in found_text + recent_text and BOB_WORD not in found_text + recent_text
    found_text, _ = anyio.run(over_mcp, bobs)
    assert BOB_WORD in found_text


def test_memories_pulled_by_sync_keep_the_owner_they_were_written_by(
        tmp_path: Path, models_dir: Path) -> None:
    from daemon.sync.exchange import export_memories, import_memories

    alice_cfg = load_config(_config(tmp_path / "a.toml", tmp_path / "a", models_dir,
                                    "laptop", "alice"))
    alice = Engine(alice_cfg)
    try:
        alice.store.upsert_memories([_memory(alice.store, alice, ALICE_WORD, "alice")])
        segments = [s["data"] for s in export_memories(alice.store)["segments"]]
    finally:
        alice.close()
    bob = Store(tmp_path / "b-store", 384, "all-minilm-l6-v2", owner=("desk", "bob"))
    assert import_memories(bob, segments)["inserted"] == 1
    [row] = bob.memory_rows("id = 'm-alice'")
    assert (row["device"], row["user"]) == ("laptop", "alice")
