"""Memory-augmented completions and the MCP tools, on a real daemon with a real store
and embedder (the chat upstreams are real HTTP servers that record what they got)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
import openai
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from tests.daemon.upstream_fixtures import model_entry

WORD = "zanzibarquokka"




def wait_searchable(d: Any, word: str, timeout: float = 240) -> None:
    """Until a search finds `word` and the store holds every journaled event: a search
    finds a new event in the journal at once, a context pack only once it is stored."""
    deadline = time.monotonic() + timeout
    with d.unix() as c:
        while time.monotonic() < deadline:
            r = c.get("/v1/memory/search", params={"q": word}, headers=d.auth())
            if r.status_code == 200 and any(word in h["text"] for h in r.json()["results"]):
                status = c.get("/v1/status", headers=d.auth())
                if status.status_code == 200 and status.json()["journal"]["new"] == 0:
                    return
            time.sleep(1)
    raise AssertionError(f"{word} never became searchable:\n{d.log.read_text()[-3000:]}")


def tool_text(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


def test_memory_goes_into_the_prompt_of_a_local_model_only_and_mcp_serves_it(
        tmp_path: Path, make_config: Any, start_daemon: Any, upstreams: Any) -> None:
    root = tmp_path / "work"
    root.mkdir()
    (root / "notes.md").write_text(f"Meeting notes: the {WORD} migration ships on Friday.\n")
    remote, local = upstreams("remote"), upstreams("local")
    config = make_config(roots=[root], pipeline={"summarize": False}, router={
        "models": [model_entry(remote, privacy="remote"), model_entry(local)],
        "routes": {"default": ["remote", "local"]}})
    d = start_daemon(config)
    wait_searchable(d, WORD)

    client = openai.OpenAI(base_url=f"http://127.0.0.1:{d.port}/v1", api_key=d.token,
                           max_retries=0, timeout=120)
    out = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "When does the migration ship?"}],
        extra_body={"memory": {"query": WORD, "budget_tokens": 300}})
    memory = (out.model_extra or {})["memory"]
    assert memory["used"] and memory["tokens"] <= 300
    assert out.choices[0].message.content == "answer from local"
    sent = local.stats()["last"]["messages"]
    assert sent[0]["role"] == "system" and WORD in sent[0]["content"]
    assert sent[-1]["content"] == "When does the migration ship?"
    assert remote.stats()["calls"] == 0  # captured memory never left the machine
    # Streamed, the memory note comes first.
    chunks = list(client.chat.completions.create(
        model="auto", stream=True, messages=[{"role": "user", "content": "and?"}],
        extra_body={"memory": {"query": WORD}}))
    assert (chunks[0].model_extra or {})["memory"]["used"] == memory["used"]
    assert remote.stats()["calls"] == 0
    # Without memory the remote model is first in the chain and gets the request.
    client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}])
    assert remote.stats()["calls"] == 1

    async def over_http() -> tuple[list[str], str]:
        http = httpx2.AsyncClient(headers=d.auth(), timeout=120)
        async with http, Client(streamable_http_client(f"http://127.0.0.1:{d.port}/mcp",
                                                       http_client=http)) as mcp:
            names = [t.name for t in (await mcp.list_tools()).tools]
            found = await mcp.call_tool("memory_search", {"query": WORD, "k": 3})
            return names, tool_text(found)

    names, found = anyio.run(over_http)
    assert {"memory_search", "recent_activity", "digest", "memory_context"} <= set(names)
    assert WORD in found

    async def over_stdio() -> tuple[str, str]:
        params = StdioServerParameters(command=sys.executable, args=[
            "-m", "daemon.cli", "--config", str(config), "mcp"])
        async with Client(params, read_timeout_seconds=120) as mcp:
            ctx = await mcp.call_tool("memory_context", {"query": WORD, "budget_tokens": 400})
            recent = await mcp.call_tool("recent_activity", {"limit": 5})
            return tool_text(ctx), tool_text(recent)

    ctx, recent = anyio.run(over_stdio)
    assert WORD in ctx and "notes.md" in recent

    with httpx2.Client(timeout=30) as c:  # the MCP endpoint is behind the token
        r = c.post(f"http://127.0.0.1:{d.port}/mcp", json={"jsonrpc": "2.0", "id": 1,
                                                           "method": "tools/list"})
        assert r.status_code == 401
