"""The OpenAI-compatible API on a real daemon, used through the official openai client,
in front of real upstream servers; scoped tokens, bad requests, telemetry and report."""

from __future__ import annotations

import json
import time
from typing import Any

import openai
import pytest

from tests.conftest import run_cli
from tests.daemon.upstream_fixtures import model_entry


def client_for(d: Any, token: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{d.port}/v1", api_key=token or d.token,
                         max_retries=0, timeout=60)


def test_openai_client_streams_falls_back_and_is_recorded(make_config: Any, start_daemon: Any,
                                                          upstreams: Any) -> None:
    flaky, good = upstreams("flaky"), upstreams("good")
    flaky.mode("error500")
    config = make_config(router={"models": [model_entry(flaky), model_entry(good)],
                                 "routes": {"default": ["flaky", "good"],
                                            "code": ["good"]}})
    d = start_daemon(config)
    client = client_for(d)
    out = client.chat.completions.create(model="auto", messages=[
        {"role": "user", "content": "hi"}], max_tokens=8)
    assert out.choices[0].message.content == "answer from good"
    assert out.usage is not None and out.usage.total_tokens == 14
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "hi"}],
        extra_headers={"X-Memoryd-Task": "code"})
    assert raw.headers["x-memoryd-model"] == "good"
    assert raw.headers["x-memoryd-fallback-depth"] == "0"
    stream = client.chat.completions.create(model="auto", stream=True, messages=[
        {"role": "user", "content": "hi"}])
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.strip() == "answer from good"
    ids = {m.id for m in client.models.list()}
    assert {"auto", "flaky", "good", "qwen2.5-coder-0.5b-instruct"} <= ids
    with pytest.raises(openai.NotFoundError, match="not configured"):
        client.chat.completions.create(model="gpt-nope", messages=[
            {"role": "user", "content": "hi"}])
    # Mid-stream death: the client sees the first words, then an error.
    flaky.mode("die_midstream")
    with pytest.raises(openai.APIError, match="mid-stream"):
        for _ in client.chat.completions.create(model="flaky", stream=True, messages=[
                {"role": "user", "content": "hi"}]):
            pass

    with d.tcp() as c:
        summary = c.get("/v1/telemetry/summary", headers=d.auth()).json()
        metrics = c.get("/metrics", headers=d.auth()).text
    models = {m["model"]: m for m in summary["models"]}
    assert models["flaky"]["errors"] >= 2 and models["good"]["ok"] >= 3
    assert any(r["failed_model"] == "flaky" and r["failure"] == "server_error"
               and r["recovered_by"] == "good" for r in summary["fallback_recoveries"])
    from prometheus_client.parser import text_string_to_metric_families

    attempts = {f.name: f for f in text_string_to_metric_families(metrics)}[
        "memoryd_model_attempts"]
    assert any(s.labels == {"model": "good", "task": "default", "outcome": "ok"}
               for s in attempts.samples)
    report = run_cli(config, "report").stdout
    assert "Fallbacks that recovered" in report and "flaky" in report and "good" in report


def test_bad_requests_get_clear_errors_and_the_daemon_keeps_running(
        make_config: Any, start_daemon: Any, upstreams: Any) -> None:
    good = upstreams("good")
    d = start_daemon(make_config(router={"models": [model_entry(good)],
                                         "routes": {"default": ["good"]}},
                                 api={"port": 0, "max_request_bytes": 20_000}))
    url = "/v1/chat/completions"
    with d.tcp() as c:
        assert c.post(url, json={"messages": []}).status_code == 401
        assert c.post(url, json={"messages": []},
                      headers={**d.auth(), "Host": "evil.example"}).status_code == 421
        r = c.post(url, content=b"\x00garbage{", headers=d.auth())
        assert r.status_code == 400 and "not JSON" in r.json()["error"]["message"]
        r = c.post(url, json={"messages": "hi"}, headers=d.auth())
        assert r.status_code == 400 and "messages" in r.json()["error"]["message"]
        r = c.post(url, json={"messages": [{"role": "user", "content": "x" * 30_000}]},
                   headers=d.auth())
        assert r.status_code == 413
        r = c.post(url, content=(b"x" * 1000 for _ in range(30)), headers=d.auth())
        assert r.status_code == 413  # chunked, without a length: counted while read
        r = c.post("/v1/embeddings", json={"input": [1, 2]}, headers=d.auth())
        assert r.status_code == 400
        r = c.post(url, json={"messages": [{"role": "user", "content": "hi"}]},
                   headers=d.auth())
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]


def test_scoped_tokens(make_config: Any, start_daemon: Any, upstreams: Any) -> None:
    good = upstreams("good")
    config = make_config(router={"models": [model_entry(good)], "routes": {"default": ["good"]}})
    d = start_daemon(config)
    made = json.loads(run_cli(config, "token", "create", "--scope", "complete", "--name",
                              "agent", "--json").stdout)
    secret = made["token"]
    reader = json.loads(run_cli(config, "token", "create", "--scope", "memory:read",
                                "--json").stdout)["token"]
    stored = (d.data_dir / "tokens.json").read_text()
    assert secret not in stored and reader not in stored  # only hashes
    assert (d.data_dir / "tokens.json").stat().st_mode & 0o777 == 0o600
    listed = run_cli(config, "token", "list").stdout
    assert "agent" in listed and "complete" in listed and secret not in listed

    out = client_for(d, secret).chat.completions.create(
        model="good", messages=[{"role": "user", "content": "hi"}])
    assert out.choices[0].message.content == "answer from good"
    with d.tcp() as c:
        bearer = {"Authorization": f"Bearer {secret}"}
        r = c.get("/v1/memory/search", params={"q": "x"}, headers=bearer)
        assert r.status_code == 403 and "memory:read" in r.json()["error"]["message"]
        assert c.get("/v1/telemetry/summary", headers=bearer).status_code == 403
        r = c.post("/v1/chat/completions", headers={"Authorization": f"Bearer {reader}"},
                   json={"messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 403
        # A completion that asks for memory needs memory:read as well.
        r = c.post("/v1/chat/completions", headers=bearer, json={
            "messages": [{"role": "user", "content": "hi"}], "memory": {"query": "x"}})
        assert r.status_code == 403
        assert c.get("/v1/models", headers={"Authorization": "Bearer mdt_wrong"}
                     ).status_code == 401
    run_cli(config, "token", "revoke", "agent")
    with pytest.raises(openai.AuthenticationError):
        client_for(d, secret).chat.completions.create(
            model="good", messages=[{"role": "user", "content": "hi"}])
    assert run_cli(config, "token", "revoke", "agent", check=False).returncode == 1


def test_local_only_request_never_reaches_the_remote_upstream(
        make_config: Any, start_daemon: Any, upstreams: Any) -> None:
    remote, local = upstreams("remote"), upstreams("local")
    d = start_daemon(make_config(router={
        "models": [model_entry(remote, privacy="remote"), model_entry(local)],
        "routes": {"default": ["remote", "local"]}}))
    client = client_for(d)
    out = client.chat.completions.create(model="auto", messages=[
        {"role": "user", "content": "secret stuff"}], extra_headers={"X-Memoryd-Local-Only": "1"})
    assert out.choices[0].message.content == "answer from local"
    out = client.chat.completions.create(model="auto", messages=[
        {"role": "user", "content": "secret"}], extra_body={"local_only": True}, stream=False)
    assert out.choices[0].message.content == "answer from local"
    with pytest.raises(openai.BadRequestError, match="local-only"):
        client.chat.completions.create(model="remote", messages=[
            {"role": "user", "content": "x"}], extra_body={"local_only": True})
    assert remote.stats()["calls"] == 0
    client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}])
    assert remote.stats()["calls"] == 1
    assert remote.stats()["last"]["model"] == "remote"
    assert "local_only" not in remote.stats()["last"]  # memoryd's fields stay with memoryd


def test_background_probes_close_the_circuit_when_the_upstream_returns(
        make_config: Any, start_daemon: Any, upstreams: Any) -> None:
    flaky, good = upstreams("flaky"), upstreams("good")
    d = start_daemon(make_config(router={
        "models": [model_entry(flaky), model_entry(good)],
        "routes": {"default": ["flaky", "good"]}, "breaker_failures": 2,
        "breaker_reset_seconds": 1.0, "health_interval_seconds": 0.3}))
    client = client_for(d)
    flaky.kill()
    for _ in range(3):
        out = client.chat.completions.create(model="auto", messages=[
            {"role": "user", "content": "hi"}])
        assert out.choices[0].message.content == "answer from good"
    with d.tcp() as c:
        assert c.get("/v1/router/status", headers=d.auth()).json()["circuits"]["flaky"] != "closed"
        flaky.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # no request needed: the probes close it
            if c.get("/v1/router/status", headers=d.auth()).json()["circuits"]["flaky"] == "closed":
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the circuit never closed")
    out = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}])
    assert out.choices[0].message.content == "answer from flaky"
