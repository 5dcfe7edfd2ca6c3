"""Two real llama.cpp servers (`python -m llama_cpp.server` on the bundled GGUF) as
replicas of one model behind a real daemon: both serve under load; one SIGKILLed under
load costs no client an error and the other takes everything; restarted on the same
port, it is re-admitted by the health probe and serves again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.daemon.llama_server import LlamaServer

PROMPT = [{"role": "user", "content": "Say hello in one word."}]
CLIENTS = 8


@pytest.fixture
def replicas(gguf: Path, tmp_path: Path) -> Iterator[tuple[LlamaServer, LlamaServer]]:
    # interrupt_requests off: a replica takes requests from the pool concurrently, and
    # llama-cpp-python would otherwise cut a running stream short for the newcomer
    a, b = (LlamaServer(gguf, tmp_path, name, "--interrupt_requests", "False", n_ctx=512,
                        threads=1).start() for name in ("replica-a", "replica-b"))
    try:
        a.wait()
        b.wait()
        yield a, b
    finally:
        a.kill()
        b.kill()


def test_two_llama_servers_as_replicas_survive_one_killed_under_load(
        make_config: Any, start_daemon: Any, replicas: tuple[LlamaServer, LlamaServer]) -> None:
    a, b = replicas
    d = start_daemon(make_config(pipeline={"summarize": False}, router={
        "models": [{"name": "qwen", "endpoints": [a.url, b.url], "model": "qwen",
                    "context_tokens": 512, "concurrency": 1, "timeout_seconds": 300}],
        "routes": {"default": ["qwen"]}, "health_interval_seconds": 1}))
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{d.port}/v1", api_key=d.token,
                           max_retries=0, timeout=600)

    def ask(_: int = 0) -> str:
        out = client.chat.completions.create(model="auto", messages=PROMPT, max_tokens=8,
                                             temperature=0)
        assert out.model and out.choices[0].message.content
        return out.choices[0].message.content

    def replica_states() -> dict[str, dict[str, Any]]:
        with d.tcp() as c:
            models = c.get("/v1/models", headers=d.auth()).json()["data"]
        pool = next(m for m in models if m["id"] == "qwen")
        return {r["endpoint"]: r for r in pool["memoryd"]["replicas"]}

    pool = ThreadPoolExecutor(CLIENTS)
    try:
        # 1. under load from 8 clients, both replicas serve
        list(pool.map(ask, range(CLIENTS)))
        before = replica_states()
        assert before[a.url]["served"] > 0 and before[b.url]["served"] > 0
        assert {r["state"] for r in before.values()} == {"up"}
        assert before[a.url]["served"] + before[b.url]["served"] == CLIENTS

        # 2. SIGKILL b while it is answering: every client still gets its answer
        load: list[Future[str]] = [pool.submit(ask) for _ in range(3 * CLIENTS)]
        deadline = time.monotonic() + 300
        while replica_states()[b.url]["in_flight"] == 0:
            assert time.monotonic() < deadline, "b never got a request under load"
            time.sleep(0.05)
        b.kill()
        answers = [f.result() for f in load]  # raises if any client saw an error
        assert len(answers) == 3 * CLIENTS
        after_kill = replica_states()
        assert after_kill[b.url]["state"] == "down" and after_kill[b.url]["failed"] >= 1
        assert after_kill[a.url]["state"] == "up"

        # ...and a takes all further requests
        list(pool.map(ask, range(CLIENTS)))
        later = replica_states()
        assert later[a.url]["served"] - after_kill[a.url]["served"] == CLIENTS
        assert later[b.url]["served"] == after_kill[b.url]["served"]
        assert later[b.url]["state"] == "down"

        # 3. b restarted on the same port is re-admitted by the health probe, and serves
        b.start().wait()
        deadline = time.monotonic() + 60
        while replica_states()[b.url]["state"] != "up":
            assert time.monotonic() < deadline, "b was never re-admitted"
            time.sleep(0.2)
        list(pool.map(ask, range(CLIENTS)))
        final = replica_states()
        assert final[b.url]["served"] > later[b.url]["served"]
        assert final[a.url]["served"] > later[a.url]["served"]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    deadline = time.monotonic() + 10  # telemetry is written in the background
    while True:
        with d.tcp() as c:
            models = {m["model"]: m for m in c.get("/v1/telemetry/summary",
                                                    headers=d.auth()).json()["models"]}
        if models.get("qwen", {}).get("ok") == 6 * CLIENTS or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    # the router saw no failure: the pool absorbed the dead replica
    assert models["qwen"]["ok"] == 6 * CLIENTS and models["qwen"]["failure_rate"] == 0
