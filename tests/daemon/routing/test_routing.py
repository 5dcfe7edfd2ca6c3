"""The router against real HTTP upstreams that fail on purpose (500, 429, hangs, garbage,
death mid-stream): fallback, circuit breaker, privacy, size and budget, telemetry."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from daemon.config import load_config
from daemon.routing.registry import build_registry
from daemon.routing.router import AllFailed, Ask, NoRoute, Router
from daemon.routing.telemetry import Telemetry, summary
from models.errors import UpstreamError
from models.openai_http import shared_client
from tests.daemon.upstream_fixtures import model_entry

BODY = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}




def make_router(tmp_path: Path, models: list[dict[str, Any]], routes: dict[str, list[str]],
                **router: Any) -> Router:
    path = tmp_path / "router.toml"
    path.write_text(tomli_w.dumps({"data_dir": str(tmp_path / "data"), "router": {
        "models": models, "routes": routes, "backoff_seconds": 0.01,
        "health_interval_seconds": 0, **router}}))
    cfg = load_config(path)
    calls: list[str] = []

    def local(name: str, messages: Any, params: Any) -> Any:
        calls.append(name)
        raise AssertionError("the embedded model must not be called in these tests")

    holder = SESSIONS

    def client() -> Any:
        if "c" not in holder:
            holder["c"] = shared_client()
        return holder["c"]

    reg = build_registry(cfg, local, lambda n, t: [], client)
    return Router(reg, cfg.router, Telemetry(tmp_path / "data" / "telemetry.sqlite3",
                                             flush_seconds=0.01))


LOOP: list[asyncio.AbstractEventLoop] = []
SESSIONS: dict[str, Any] = {}


@pytest.fixture(autouse=True)
def event_loop() -> Iterator[None]:
    """One loop per test: the router's pooled connections belong to the loop they
    were opened on."""
    loop = asyncio.new_event_loop()
    LOOP.append(loop)
    yield
    if "c" in SESSIONS:
        loop.run_until_complete(SESSIONS.pop("c").close())
    LOOP.remove(loop)
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


def run(coro: Any) -> Any:
    return LOOP[-1].run_until_complete(coro)


async def collect(router: Router, ask: Ask) -> tuple[str, list[bytes]]:
    started = await router.stream(dict(BODY), ask)
    return started.model, [e async for e in started.events]


def test_fallback_on_500_429_garbage_and_hang(tmp_path: Path, upstreams: Any) -> None:
    bad, slow, good = upstreams("bad"), upstreams("slow"), upstreams("good")
    bad.mode("error500")
    slow.mode("hang")
    router = make_router(tmp_path, [model_entry(bad), model_entry(slow, timeout_seconds=0.5),
                                    model_entry(good)],
                         {"default": ["bad", "slow", "good"]})
    routed = run(router.complete(dict(BODY), Ask()))
    assert routed.model == "good" and routed.depth == 2
    assert routed.data["choices"][0]["message"]["content"] == "answer from good"
    assert routed.attempts == [{"model": "bad", "outcome": "error", "error": "server_error"},
                               {"model": "slow", "outcome": "error", "error": "timeout"},
                               {"model": "good", "outcome": "ok", "error": ""}]
    bad.mode("ratelimit")
    routed = run(router.complete(dict(BODY), Ask()))
    assert routed.model == "good"
    assert router.breakers["bad"].state == "open"  # a 429 with Retry-After opens at once
    bad.mode("garbage")
    time.sleep(1.1)  # Retry-After: 1
    routed = run(router.complete(dict(BODY), Ask(task="default")))
    assert routed.model == "good"
    router.telemetry.flush()
    got = summary(router.telemetry.path)
    failures = {(r["failed_model"], r["failure"]) for r in got["fallback_recoveries"]}
    assert ("slow", "timeout") in failures and ("bad", "bad_response") in failures
    assert {m["model"]: m["errors"] for m in got["models"]}["bad"] == 3


def test_all_failing_raises_with_every_reason_and_bad_request_is_not_retried(
        tmp_path: Path, upstreams: Any) -> None:
    a, b = upstreams("a"), upstreams("b")
    a.mode("error500")
    b.mode("error500")
    router = make_router(tmp_path, [model_entry(a), model_entry(b)],
                         {"default": ["a", "b"]}, retries=1, breaker_failures=10)
    with pytest.raises(AllFailed) as err:
        run(router.complete(dict(BODY), Ask()))
    assert [m for m, _ in err.value.errors] == ["a", "b", "a", "b"]  # one retry pass
    assert a.stats()["calls"] == 2


def test_stream_falls_back_before_first_chunk_and_errors_after(tmp_path: Path,
                                                               upstreams: Any) -> None:
    dead, dying, good = upstreams("dead"), upstreams("dying"), upstreams("good")
    dead.kill()
    dying.mode("die_midstream")
    router = make_router(tmp_path, [model_entry(dead), model_entry(dying), model_entry(good)],
                         {"default": ["dead", "good"], "code": ["dying", "good"]})
    name, events = run(collect(router, Ask()))
    assert name == "good"
    text = "".join(json.loads(e[6:])["choices"][0]["delta"].get("content") or ""
                   for e in events if e.startswith(b"data: {"))
    assert text.strip() == "answer from good" and events[-1] == b"data: [DONE]\n\n"
    # The upstream dies after its first words: the client gets them, then an error event.
    name, events = run(collect(router, Ask(task="code")))
    assert name == "dying"
    last = json.loads(events[-1][6:])
    assert last["error"]["type"] == "upstream_error" and b"[DONE]" not in b"".join(events)
    router.telemetry.flush()
    outcomes = {(m["model"], m["errors"]) for m in summary(router.telemetry.path)["models"]}
    assert ("dying", 1) in outcomes


def test_circuit_opens_then_closes_when_the_upstream_comes_back(tmp_path: Path,
                                                                upstreams: Any) -> None:
    flaky, good = upstreams("flaky"), upstreams("good")
    router = make_router(tmp_path, [model_entry(flaky), model_entry(good)],
                         {"default": ["flaky", "good"]}, breaker_failures=2,
                         breaker_reset_seconds=0.5)
    flaky.kill()
    for _ in range(2):
        assert run(router.complete(dict(BODY), Ask())).model == "good"
    assert router.breakers["flaky"].state == "open"
    skipped = run(router.complete(dict(BODY), Ask()))
    assert skipped.depth == 0  # skipped, not tried
    assert [(a["model"], a["outcome"]) for a in skipped.attempts] == [("flaky", "skipped"),
                                                                      ("good", "ok")]
    flaky.start()  # back on the same port
    time.sleep(0.6)
    assert router.breakers["flaky"].state == "half_open"
    run(router.probe_once())  # the background health probe closes it
    assert router.breakers["flaky"].state == "closed"
    assert run(router.complete(dict(BODY), Ask())).model == "flaky"
    # A half-open trial request closes it as well.
    flaky.mode("error500")
    for _ in range(2):
        run(router.complete(dict(BODY), Ask()))
    flaky.mode("ok")
    time.sleep(0.6)
    assert run(router.complete(dict(BODY), Ask())).model == "flaky"
    assert router.breakers["flaky"].state == "closed"
    router.telemetry.flush()
    got = summary(router.telemetry.path)
    assert any(r["failure"] == "connect" and r["recovered_by"] == "good"
               for r in got["fallback_recoveries"])


def test_local_only_and_memory_never_reach_a_remote_model(tmp_path: Path,
                                                          upstreams: Any) -> None:
    remote, local = upstreams("remote"), upstreams("local")
    router = make_router(tmp_path, [model_entry(remote, privacy="remote"),
                                    model_entry(local, privacy="local")],
                         {"default": ["remote", "local"]})
    assert run(router.complete(dict(BODY), Ask(local_only=True))).model == "local"
    assert run(router.complete(dict(BODY), Ask(memory_used=3))).model == "local"
    assert run(collect(router, Ask(local_only=True)))[0] == "local"
    local.kill()  # even when the only local model is down, the remote one is not asked
    with pytest.raises(AllFailed):
        run(router.complete(dict(BODY), Ask(local_only=True)))
    with pytest.raises(NoRoute):
        run(router.complete(dict(BODY), Ask(model="remote", local_only=True)))
    assert remote.stats()["calls"] == 0
    assert run(router.complete(dict(BODY), Ask())).model == "remote"
    assert remote.stats()["calls"] == 1


def test_memory_goes_remote_only_to_a_named_allowed_model(tmp_path: Path,
                                                          upstreams: Any) -> None:
    remote = upstreams("remote")
    router = make_router(tmp_path, [model_entry(remote, privacy="remote")],
                         {"default": ["remote"]}, memory_remote_models=["remote"])
    assert run(router.complete(dict(BODY), Ask(memory_used=2))).model == "remote"


def test_auto_picks_by_task_size_and_budget(tmp_path: Path, upstreams: Any) -> None:
    small, big, coder = upstreams("small"), upstreams("big"), upstreams("coder")
    router = make_router(tmp_path, [
        model_entry(small, context_tokens=512),
        model_entry(big, context_tokens=32000, usd_per_mtok_in=3.0, usd_per_mtok_out=15.0),
        model_entry(coder, skills=["code"])], {"default": ["small", "big"]})
    assert run(router.complete(dict(BODY), Ask())).model == "small"
    long = {"messages": [{"role": "user", "content": "x " * 3000}], "max_tokens": 64}
    assert router.plan(long, Ask()) == ["big"]
    assert run(router.complete(long, Ask())).model == "big"
    assert router.plan(dict(BODY), Ask(task="code")) == ["coder", "small", "big"]
    with pytest.raises(NoRoute, match="max_cost_usd"):
        router.plan(long, Ask(max_cost_usd=0.0001))
    with pytest.raises(NoRoute, match="not configured"):
        router.plan(dict(BODY), Ask(model="nope"))
    assert router.plan(dict(BODY), Ask(model="coder"))[0] == "coder"


def test_upstream_error_classes(tmp_path: Path, upstreams: Any) -> None:
    up = upstreams("one")
    router = make_router(tmp_path, [model_entry(up)], {"default": ["one"]}, retries=0)
    backend = router.reg.chat["one"]

    async def call() -> Any:
        return await backend.chat(dict(BODY))

    up.mode("ratelimit")
    with pytest.raises(UpstreamError) as err:
        run(call())
    assert err.value.kind == "rate_limited" and err.value.retry_after == 1.0
    up.mode("garbage")
    with pytest.raises(UpstreamError, match="not a chat completion"):
        run(call())


def test_report_finds_overqualified_models_and_tasks_that_could_move_local(
        tmp_path: Path, upstreams: Any) -> None:
    pricey, cheap = upstreams("pricey"), upstreams("cheap")
    router = make_router(tmp_path, [
        model_entry(pricey, privacy="remote", usd_per_mtok_in=3.0, usd_per_mtok_out=15.0),
        model_entry(cheap, privacy="local")], {"default": ["pricey"], "code": ["pricey"]})
    for model in ("pricey", "pricey", "cheap", "cheap"):
        run(router.complete(dict(BODY), Ask(task="code", model=model)))
    run(router.complete(dict(BODY), Ask(task="default")))
    router.telemetry.flush()
    got = summary(router.telemetry.path)
    over = got["overqualified"]
    assert [(r["task"], r["model"], r["cheaper_model"]) for r in over] == [
        ("code", "pricey", "cheap")]
    assert over[0]["saving_usd"] == pytest.approx(2 * (11 * 3.0 + 3 * 15.0) / 1e6)
    assert [(r["task"], r["local_model"], r["remote_attempts"])
            for r in got["could_move_local"]] == [("code", "cheap", 2)]
    tasks = {t["task"]: t["tokens"] for t in got["tasks_by_tokens"]}
    assert tasks == {"code": 4 * 14, "default": 14}


def test_embeddings_route_to_an_http_embedder_and_fail_clearly(tmp_path: Path,
                                                               upstreams: Any) -> None:
    emb = upstreams("emb")
    router = make_router(tmp_path, [model_entry(emb, skills=["embed"])], {})
    name, vectors = run(router.embed(["ab", "abcd"], model="emb"))
    assert name == "emb" and [v[0] for v in vectors] == [2.0, 4.0]
    emb.kill()
    with pytest.raises(AllFailed, match="emb: connect"):
        run(router.embed(["x"], model="emb"))
    with pytest.raises(NoRoute):
        run(router.embed(["x"], model="nope"))


def test_telemetry_forgets_attempts_older_than_keep_days(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from daemon.routing import telemetry
    from daemon.routing.telemetry import Attempt

    monkeypatch.setattr(telemetry, "PRUNE_EVERY_SECONDS", 0.0)  # after every batch

    def attempt(age_days: float, rid: str) -> Attempt:
        return Attempt(ts=time.time() - age_days * 86400, request_id=rid, route="api",
                       task="default", model="m", backend="openai", privacy="local",
                       tokens_in=1, tokens_out=1, cost_usd=0.0, latency_ms=1.0, ttft_ms=None,
                       outcome="ok", error_class="", fallback_depth=0, memory_used=0)

    path = tmp_path / "telemetry.sqlite3"
    tel = Telemetry(path, flush_seconds=0.01, keep_days=30)
    for rid, age in (("ancient", 400), ("last-quarter", 31), ("yesterday", 1)):
        tel.record(attempt(age, rid))
    tel.flush()
    tel.record(attempt(0, "now"))
    tel.flush()
    import sqlite3

    kept = {r[0] for r in sqlite3.connect(path).execute("SELECT request_id FROM attempts")}
    assert kept == {"yesterday", "now"}
