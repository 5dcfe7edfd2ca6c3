"""The end-to-end path with real models: the embedded GGUF answering the API through the
worker (the daemon never loads it), and llama-cpp-python's own OpenAI-compatible server
as a routed upstream, streamed through memoryd to the openai client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.daemon.llama_server import llama_server

PROMPT = [{"role": "user", "content": "Say hello in one word."}]


@pytest.fixture(name="llama_server")
def llama_server_fixture(gguf: Path, tmp_path: Path) -> Iterator[str]:
    with llama_server(gguf, tmp_path) as url:
        yield url


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_embedded_model_answers_the_api_through_the_worker(make_config: Any,
                                                           start_daemon: Any) -> None:
    d = start_daemon(make_config(pipeline={"summarize": False}))
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{d.port}/v1", api_key=d.token,
                           max_retries=0, timeout=600)
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=PROMPT,
                                                            max_tokens=8, temperature=0)
    out = raw.parse()
    assert raw.headers["x-memoryd-model"] == "qwen2.5-coder-0.5b-instruct"
    assert out.choices[0].message.content and out.usage and out.usage.completion_tokens > 0
    emb = client.embeddings.create(model="auto", input=["hello", "world"])  # base64 on the wire
    assert len(emb.data) == 2 and len(emb.data[0].embedding) == 384
    with d.unix() as c:
        engine = c.get("/v1/status", headers=d.auth()).json()["engine"]
    assert engine["models_loaded"]["summarizer"] is True  # loaded in the worker...
    assert "libllama" not in _maps(d.proc.pid)  # ...and never in the daemon


def test_llama_cpp_server_upstream_streams_through_memoryd(make_config: Any, start_daemon: Any,
                                                           llama_server: str) -> None:
    d = start_daemon(make_config(pipeline={"summarize": False}, router={
        "models": [{"name": "llama-server", "endpoint": llama_server, "model": "qwen",
                    "context_tokens": 1024, "timeout_seconds": 300}],
        "routes": {"default": ["llama-server"]}}))
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{d.port}/v1", api_key=d.token,
                           max_retries=0, timeout=600)
    chunks = list(client.chat.completions.create(model="auto", messages=PROMPT, max_tokens=8,
                                                 temperature=0, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() and len(chunks) >= 3  # token by token, not one lump
    out = client.chat.completions.create(model="llama-server", messages=PROMPT, max_tokens=8,
                                         temperature=0)
    assert out.choices[0].message.content
    with d.tcp() as c:
        models = {m["model"]: m for m in c.get("/v1/telemetry/summary",
                                                headers=d.auth()).json()["models"]}
    assert models["llama-server"]["ok"] == 2 and models["llama-server"]["avg_ttft_ms"] > 0
