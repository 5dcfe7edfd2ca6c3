"""Explained routing on a real daemon: every answer says which model served it and why
the other candidates did not (privacy, budget, context window, an open circuit, a failed
attempt), streamed and not; the same explanation is in telemetry and in the status
page's JSON. Upstreams are real HTTP servers that fail on purpose
(tests/daemon/fake_upstream.py); one fallback lands on the embedded llama.cpp model."""

from __future__ import annotations

import json
import sqlite3

import httpx
import openai

from daemon.config import load_config
from daemon.routing.registry import build_registry
from daemon.routing.router import Ask, Router
from daemon.routing.telemetry import Telemetry
from tests.daemon.upstream_fixtures import model_entry

LONG = "Summarize the quarterly numbers for the board. " * 10  # ~500 characters


def test_an_answer_explains_its_route_in_json_stream_telemetry_and_status_page(
        make_config, start_daemon, upstreams) -> None:
    remote, pricey, small, flaky, good = (upstreams(n) for n in (
        "remote", "pricey", "small", "flaky", "good"))
    flaky.mode("error500")
    config = make_config([], pipeline={"summarize": False}, router={
        "models": [model_entry(remote, privacy="remote"),
                   model_entry(pricey, usd_per_mtok_in=1000.0),
                   model_entry(small, context_tokens=64), model_entry(flaky),
                   model_entry(good)],
        "routes": {"default": ["remote", "pricey", "small", "flaky", "good"]},
        "retries": 0, "breaker_failures": 1, "breaker_reset_seconds": 300,
        "health_interval_seconds": 0})
    d = start_daemon(config)
    request = {"model": "auto", "messages": [{"role": "user", "content": LONG}],
               "max_tokens": 16, "local_only": True, "max_cost_usd": 0.001}
    with d.tcp() as c:
        r = c.post("/v1/chat/completions", json=request, headers=d.auth())
    assert r.status_code == 200, r.text
    assert r.headers["x-memoryd-model"] == "good"
    assert r.headers["x-memoryd-fallback-depth"] == "1"
    answer = r.json()
    assert answer["choices"][0]["message"]["content"] == "answer from good"
    why = answer["memoryd"]
    assert why["model"] == "good" and why["task"] == "default"
    assert why["candidates"] == ["remote", "pricey", "small", "flaky", "good"]
    assert why["chain"] == ["flaky", "good"]
    assert [(s["model"], s["reason"]) for s in why["skipped"]] == [
        ("remote", "local_only"), ("pricey", "max_cost"), ("small", "context_window")]
    assert "64 tokens" in why["skipped"][2]["detail"]
    assert why["failed"] == [{"model": "flaky", "error": "server_error"}]
    assert why["fallback_depth"] == 1 and why["memory"] == {"used": [], "tokens": 0}
    assert "flaky (server_error)" in why["why"] and why["why"].endswith("good answered")
    assert why["request_id"] == r.headers["x-memoryd-request-id"]
    assert remote.stats()["calls"] == pricey.stats()["calls"] == small.stats()["calls"] == 0

    # Streamed: flaky's circuit is open now (one failure opens it here), and the first
    # chunk, without choices, says so before the answer.
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{d.port}/v1", api_key=d.token,
                           max_retries=0, timeout=120)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=request["messages"], max_tokens=16, stream=True,
        extra_body={"local_only": True, "max_cost_usd": 0.001})
    assert raw.headers["x-memoryd-model"] == "good"
    chunks = list(raw.parse())
    lead = (chunks[0].model_extra or {})["memoryd"]
    assert chunks[0].choices == [] and lead["model"] == "good"
    assert ("flaky", "circuit_open") in [(s["model"], s["reason"]) for s in lead["skipped"]]
    assert lead["failed"] == [] and lead["fallback_depth"] == 0
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == "answer from good"
    assert flaky.stats()["calls"] == 1  # its open circuit kept the request away

    # A refusal is explained too.
    with d.tcp() as c:
        refused = c.post("/v1/chat/completions", headers=d.auth(), json={
            "model": "remote", "local_only": True, "messages": request["messages"]})
        assert refused.status_code == 400 and "local-only" in refused.text
        # The status page's JSON: the newest decisions first, each the explanation the
        # caller got.
        got = c.get("/v1/router/decisions", params={"limit": 10}, headers=d.auth()).json()
        one = c.get("/v1/router/decisions", params={"request_id": why["request_id"]},
                    headers=d.auth()).json()["decisions"]
        page = c.get("/ui", headers=d.auth()).text
    assert [x["model"] for x in got["decisions"]] == ["", "good", "good"]
    assert got["decisions"][0]["explanation"]["refused"].startswith("model 'remote' cannot")
    assert one[0]["explanation"] == why
    assert "/v1/router/decisions" in page and 'id="decisions"' in page
    # ... read from telemetry's own database, where they live.
    db = sqlite3.connect(d.data_dir / "telemetry.sqlite3")
    stored = db.execute("SELECT explanation FROM decisions WHERE request_id = ?",
                        (why["request_id"],)).fetchone()
    db.close()
    assert json.loads(stored[0]) == why


def test_a_failing_upstream_falls_back_to_the_embedded_llama_cpp_model(
        make_config, start_daemon, upstreams) -> None:
    flaky = upstreams("flaky")
    flaky.mode("error500")
    config = make_config([], pipeline={"summarize": False}, router={
        "models": [model_entry(flaky)],
        "routes": {"default": ["flaky", "qwen2.5-coder-0.5b-instruct"]},
        "retries": 0, "health_interval_seconds": 0})
    d = start_daemon(config)
    with httpx.Client(base_url=f"http://127.0.0.1:{d.port}", timeout=600) as c:
        r = c.post("/v1/chat/completions", headers=d.auth(), json={
            "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8,
            "temperature": 0})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["choices"][0]["message"]["content"]  # real llama.cpp wrote it
    why = answer["memoryd"]
    assert why["model"] == "qwen2.5-coder-0.5b-instruct"
    assert why["failed"] == [{"model": "flaky", "error": "server_error"}]
    assert why["fallback_depth"] == 1


def test_plan_names_every_skipped_candidate_and_its_reason(tmp_path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        'data_dir = "' + str(tmp_path / "data") + '"\n'
        '[[router.models]]\nname = "hosted"\nendpoint = "https://api.example.com/v1"\n'
        '[[router.models]]\nname = "near"\nendpoint = "http://127.0.0.1:9/v1"\n'
        '[router.routes]\ndefault = ["hosted", "near"]\n')
    cfg = load_config(path)
    reg = build_registry(cfg, lambda *a: None, lambda *a: [], lambda: None)
    rt = Router(reg, cfg.router, Telemetry(tmp_path / "t.sqlite3", enabled=False))
    body = {"messages": [{"role": "user", "content": "hi"}]}
    plan = rt.decide(body, Ask(memory_used=2))
    assert plan.chain == ["near"] and plan.skipped[0]["reason"] == "memory_remote"
    assert plan.held == [] and not plan.needs_memory_approval
    held = rt.decide(body, Ask(memory_used=2), "hold")
    assert held.held == ["hosted"] and held.needs_memory_approval  # hosted comes first
    assert rt.decide(body, Ask(memory_used=2), "allow").chain == ["hosted", "near"]
    named = rt.decide(body, Ask(model="hosted", memory_used=2), "hold")
    assert named.chain == ["near"] and named.needs_memory_approval
    assert rt.plan(body, Ask()) == ["hosted", "near"]
    assert "'default' route" in rt.decide(body, Ask()).why
