"""What each scope reads, on a real daemon over a real store: `memory:read` gets memories
and digests (search, context packs, digests, a completion's memory) and never a raw
event; `memory:raw` adds the events on every path; `/v1/status` gives daemon-wide details
to `admin` only; sync URLs are shown and logged without their credentials; an approval's
`irreversible` description is stored and logged redacted."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import openai

from collectors.base import Event
from daemon.config import load_config
from daemon.store.engine import Engine
from tests.conftest import run_cli
from tests.daemon.api.test_owners import _config
from tests.daemon.upstream_fixtures import model_entry

RAW = "thistlecrown"  # in the raw events only: their text, paths and commands
MEMORY = "lanternfish"  # in the memory made of them only
AWS_KEY = "AKIAQ3EXAMPLEKEY7777"


def shows_raw(text: str) -> bool:
    """Whether `text` holds a raw event's command, text or title (not just the query)."""
    return any(f in text for f in (f"--{RAW}", f"ran the {RAW}", f"{RAW} 0", f"{RAW} 1"))


def _seed(cfg_path: Path) -> None:
    """A store holding three raw events and the chunk memory made of them."""
    engine = Engine(load_config(cfg_path))
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        events = [Event.new(ts=now - timedelta(minutes=10 - i), source="shell",
                            kind="shell.command", subject=f"deploy --{RAW} --stage {i}",
                            title=f"{RAW} {i}", text=f"ran the {RAW} deploy, stage {i}")
                  for i in range(3)]
        engine.index(events)
        text = f"Shipped the {MEMORY} release in three stages."
        engine.store.upsert_memories([{
            "id": "m-release", "ts": now - timedelta(minutes=10),
            "ts_end": now - timedelta(minutes=7), "level": "chunk", "source": "shell",
            "title": f"shell: {MEMORY}", "text": text, "event_ids": [e.id for e in events],
            "model": "test", "created": now, "doc": text,
            "vector": engine.models.embed([text])[0], "project": MEMORY, "sources": [],
            "identifiers": [], "entities": [], "decisions": [], "open_tasks": [],
            "dates": []}])
    finally:
        engine.close()


def test_each_scope_reads_what_it_says_on_every_path(tmp_path: Path, models_dir: Path,
                                                    start_daemon: Any, upstreams: Any) -> None:
    data = tmp_path / "data"
    local = upstreams("local")
    secret_file = tmp_path / "peer-token"
    secret_file.write_text("peer-token-value\n")
    config = _config(tmp_path / "alice.toml", data, models_dir, "laptop", "alice",
                     router={"models": [model_entry(local)], "routes": {"default": ["local"]}},
                     sync={"targets": [{"name": "peer", "token_file": str(secret_file),
                                        "url": "http://alice:hunter2pass@127.0.0.1:9/"
                                               "?token=abc123secret"}]})
    _seed(config)
    d = start_daemon(config, data)

    def token(*scopes: str) -> str:
        args = [a for s in scopes for a in ("--scope", s)]
        out = run_cli(config, "token", "create", "--json", "--name", "-".join(scopes)
                      .replace(":", "_"), *args)
        return str(json.loads(out.stdout)["token"])

    reader = token("memory:read", "complete")
    raw = token("memory:read", "memory:raw", "complete")

    def get(path: str, secret: str, **params: Any) -> Any:
        with d.tcp() as c:
            return c.get(path, params=params, headers={"Authorization": f"Bearer {secret}"})

    deadline = time.monotonic() + 120  # the worker starts on first use
    while get("/v1/memory/search", d.token, q=RAW).status_code == 503:
        assert time.monotonic() < deadline, d.log.read_text()[-3000:]
        time.sleep(0.5)

    # search: the reader finds the memory, never an event, nor the events' commands
    for q in (RAW, MEMORY, f"{RAW} deploy stage"):
        hits = get("/v1/memory/search", reader, q=q, k=20).json()["results"]
        assert all(h["kind"].startswith("memory.") for h in hits), hits
        assert RAW not in json.dumps(hits)
    assert get("/v1/memory/search", reader, q=MEMORY).json()["results"][0]["id"] == "m-release"
    assert get("/v1/memory/search", reader, q=RAW, kind="shell.command").json()["results"] == []
    everything = json.dumps(get("/v1/memory/search", raw, q=f"{RAW} deploy", k=20).json())
    assert "\"kind\": \"shell.command\"" in everything and f"ran the {RAW} deploy" in everything
    # context packs
    def pack(secret: str) -> str:  # without its title line, which repeats the query
        md = get("/v1/memory/context", secret, query=f"{MEMORY} {RAW} deploy").json()
        return str(md["markdown"]).split("\n", 1)[1]

    assert MEMORY in pack(reader) and RAW not in pack(reader)
    assert shows_raw(pack(raw))
    # digests: memory:read; recent and timeline: memory:raw only
    assert get("/v1/memory/digest", reader).status_code == 200
    assert get("/v1/memory/recent", reader).status_code == 403
    assert get("/v1/memory/timeline", reader).status_code == 403
    assert get("/v1/memory/recent", raw).status_code == 200

    # a completion's memory
    for secret, sees_raw in ((reader, False), (raw, True)):
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{d.port}/v1", api_key=secret,
                               max_retries=0, timeout=120)
        client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "?"}],
            extra_body={"memory": {"query": f"{MEMORY} {RAW} deploy"}})
        prompt = json.dumps(local.stats()["last"]["messages"])
        assert MEMORY in prompt and shows_raw(prompt) is sees_raw, prompt[:2000]

    # status: daemon-wide details for admin only, and never a URL's credentials
    mine = get("/v1/status", reader).json()
    assert set(mine) == {"memory"} and mine["memory"]["available"] is True
    assert mine["memory"]["counts"] == {"memories": 1}
    assert get("/v1/status", raw).json()["memory"]["counts"] == {"events": 3, "memories": 1}
    full = get("/v1/status", d.token).json()
    assert full["data_dir"] == str(data) and full["sync"]["targets"][0]["name"] == "peer"
    shown = json.dumps(full) + json.dumps(get("/v1/ui/sources", d.token).json())
    assert "alice:***@127.0.0.1:9" in shown and "token=***" in shown
    sync = run_cli(config, "sync", "status", check=False)
    for text in (shown, sync.stdout + sync.stderr):
        assert "hunter2pass" not in text and "abc123secret" not in text

    # an irreversible step's description is stored (and logged) redacted
    with d.tcp() as c:
        r = c.post("/v1/chat/completions", headers=d.auth(), json={
            "model": "auto", "messages": [{"role": "user", "content": "go"}],
            "irreversible": f"rotate {AWS_KEY} and drop the prod table",
            "approval_timeout_seconds": 1})
        assert r.status_code in (403, 408, 409, 200), r.text[:300]
        approvals = c.get("/v1/approvals", params={"status": "all"},
                          headers=d.auth()).json()["approvals"]
    assert approvals and "drop the prod table" in json.dumps(approvals)
    assert AWS_KEY not in json.dumps(approvals)
    time.sleep(0.5)
    log = d.log.read_text()
    for secret in (AWS_KEY, "hunter2pass", "abc123secret"):
        assert secret not in log
