"""Replicas of one model behind the router (models/replicas.py), against real HTTP
upstreams that fail on purpose: least-busy choice, a failing replica dropped and the call
retried inside the pool, re-admission when the health probe answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from daemon.config import load_config
from daemon.errors import ConfigError
from daemon.routing.registry import build_registry
from daemon.routing.router import AllFailed, Ask, Router
from daemon.routing.telemetry import Telemetry
from models.base import Profile
from models.openai_http import shared_client
from models.replicas import ReplicaPool
from tests.conftest import run_cli
from tests.daemon.chromium import Chromium, chromium_path
from tests.daemon.upstream_fixtures import Upstream, model_entry

BODY = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}


class Env:
    """One event loop and one connection pool per test, as the daemon has one of each."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.loop = asyncio.new_event_loop()
        self.session: Any = None

    def client(self) -> Any:
        if self.session is None:
            self.session = shared_client()
        return self.session

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def router(self, models: list[dict[str, Any]], routes: dict[str, list[str]]) -> Router:
        path = self.tmp_path / "router.toml"
        path.write_text(tomli_w.dumps({"data_dir": str(self.tmp_path / "data"), "router": {
            "models": models, "routes": routes, "backoff_seconds": 0.01, "retries": 0,
            "health_interval_seconds": 0}}))
        cfg = load_config(path)

        def local(*_: Any) -> Any:
            raise AssertionError("the embedded model must not be called in these tests")

        reg = build_registry(cfg, local, local, self.client)
        return Router(reg, cfg.router, Telemetry(self.tmp_path / "data" / "t.sqlite3",
                                                 flush_seconds=0.01))

    def close(self) -> None:
        if self.session is not None:
            self.run(self.session.close())
        self.run(self.loop.shutdown_asyncgens())
        self.loop.close()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    e.close()


def pool_entry(name: str, *ups: Upstream, **extra: Any) -> dict[str, Any]:
    entry = model_entry(ups[0], **extra)
    del entry["endpoint"]
    return {**entry, "name": name, "endpoints": [u.url for u in ups]}


def states(pool: ReplicaPool) -> list[str]:
    return [r["state"] for r in pool.status()]


def calls(up: Upstream) -> int:
    return int(up.stats()["calls"])


def test_choice_is_least_busy_then_fastest_then_least_served() -> None:
    profile = Profile(name="m", context_tokens=1024, backend="openai")
    pool = ReplicaPool(profile, ["http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1",
                                 "http://127.0.0.1:3/v1"], "m", client=shared_client)
    a, b, c = pool.replicas
    a.in_flight, b.in_flight, c.in_flight = 2, 1, 1
    b.latency_ms, c.latency_ms = 300.0, 120.0
    assert pool.choose() == 2  # b and c equally busy: c answers faster
    c.in_flight = 3
    assert pool.choose() == 1
    b.up = False
    assert pool.choose() == 0  # a dropped replica gets nothing while another is up
    assert pool.choose(exclude={0, 2}) == 1  # the others were tried: the down one is next
    assert pool.choose(exclude={0, 1, 2}) is None  # tried them all
    a.up = c.up = False
    assert pool.choose() == 1  # none up: the down ones are the last resort
    a.up = b.up = c.up = True
    a.in_flight = b.in_flight = c.in_flight = 0
    a.latency_ms = b.latency_ms = c.latency_ms = 100.0
    a.served, b.served, c.served = 5, 2, 4
    assert pool.choose() == 1
    # the pool looks like one model with room for every replica
    assert pool.profile.concurrency == 3 and pool.profile.timeout_seconds == 3 * 120.0


def test_a_busy_replica_is_passed_over(env: Env, upstreams: Any) -> None:
    a, b = upstreams("a"), upstreams("b")
    a.mode("hang")
    router = env.router([pool_entry("m", a, b, timeout_seconds=30)], {"default": ["m"]})
    pool = router.reg.chat["m"]

    async def scenario() -> list[str]:
        stuck = asyncio.ensure_future(router.complete(dict(BODY), Ask()))
        while pool.replicas[0].in_flight == 0:  # the first call goes to a, and hangs there
            await asyncio.sleep(0.01)
        answers = [(await router.complete(dict(BODY), Ask())).data for _ in range(3)]
        assert pool.replicas[0].in_flight == 1
        stuck.cancel()
        await asyncio.gather(stuck, return_exceptions=True)
        return [d["choices"][0]["message"]["content"] for d in answers]

    assert env.run(scenario()) == ["answer from b"] * 3
    assert calls(a) == 1 and calls(b) == 3
    assert pool.replicas[0].in_flight == 0  # a cancelled call gives its slot back
    assert states(pool) == ["up", "up"]  # busy is not failed


def test_a_failing_replica_is_dropped_and_readmitted_by_its_probe(env: Env,
                                                                  upstreams: Any) -> None:
    a, b = upstreams("a"), upstreams("b")
    router = env.router([pool_entry("m", a, b)], {"default": ["m"]})
    pool = router.reg.chat["m"]
    a.mode("error500")
    routed = env.run(router.complete(dict(BODY), Ask()))
    # the pool retried on b: the router saw one model answer at the first try
    assert routed.model == "m" and routed.depth == 0
    assert routed.data["choices"][0]["message"]["content"] == "answer from b"
    assert states(pool) == ["down", "up"] and "server_error" in pool.status()[0]["last_error"]
    for _ in range(4):
        env.run(router.complete(dict(BODY), Ask()))
    assert calls(a) == 1 and calls(b) == 5  # a dropped replica gets nothing more
    assert router.breakers["m"].state == "closed"
    env.run(router.probe_once())
    assert states(pool) == ["up", "up"]  # a's /models answers even while chat fails
    a.mode("ok")
    env.run(router.complete(dict(BODY), Ask()))  # unmeasured, so a is tried first
    assert calls(a) == 2 and calls(b) == 5
    served = {r["endpoint"]: r["served"] for r in pool.status()}
    assert served == {a.url: 1, b.url: 5}
    assert all(r["latency_ms"] > 0 for r in pool.status())


def test_calls_wait_in_the_pool_rather_than_overload_the_survivor(env: Env,
                                                                  upstreams: Any) -> None:
    a, b = upstreams("a"), upstreams("b")
    router = env.router([pool_entry("m", a, b, timeout_seconds=30, concurrency=1)],
                        {"default": ["m"]})
    pool = router.reg.chat["m"]
    a.mode("error500")
    env.run(router.complete(dict(BODY), Ask()))  # a is dropped; the router still allows 2
    assert states(pool) == ["down", "up"]
    b.mode("hang")

    async def scenario() -> str:
        first = asyncio.ensure_future(router.complete(dict(BODY), Ask()))
        while pool.replicas[1].in_flight == 0:
            await asyncio.sleep(0.01)
        second = asyncio.ensure_future(router.complete(dict(BODY), Ask()))
        await asyncio.sleep(0.3)
        # b is at its cap of 1: the second call waits in the pool, not inside b
        assert not second.done() and [r.in_flight for r in pool.replicas] == [0, 1]
        b.mode("ok")
        first.cancel()  # frees b's slot
        await asyncio.gather(first, return_exceptions=True)
        routed = await asyncio.wait_for(second, 10)
        return str(routed.data["choices"][0]["message"]["content"])

    assert env.run(scenario()) == "answer from b"
    assert calls(a) == 1 and calls(b) == 3  # 1 before, the hung one, then the waiter


def test_a_killed_replica_is_dropped_then_readmitted_on_restart(env: Env,
                                                               upstreams: Any) -> None:
    a, b = upstreams("a"), upstreams("b")
    router = env.router([pool_entry("m", a, b)], {"default": ["m"]})
    pool = router.reg.chat["m"]

    async def two_at_once() -> list[Any]:  # the second call finds one replica busy
        return list(await asyncio.gather(*(router.complete(dict(BODY), Ask())
                                           for _ in range(2))))

    env.run(two_at_once())
    assert calls(a) == 1 and calls(b) == 1
    a.kill()
    for routed in env.run(two_at_once()) + env.run(two_at_once()):
        assert routed.depth == 0
        assert routed.data["choices"][0]["message"]["content"] == "answer from b"
    assert states(pool) == ["down", "up"]
    assert pool.status()[0]["last_error"].startswith("connect")
    env.run(router.probe_once())
    assert states(pool) == ["down", "up"]  # still dead: the probe does not re-admit it
    a.start()  # the same port
    env.run(router.probe_once())
    assert states(pool) == ["up", "up"]
    env.run(two_at_once())
    assert calls(a) == 1  # the new process served


def test_embeddings_move_past_a_dead_replica(env: Env, upstreams: Any) -> None:
    a, b = upstreams("a"), upstreams("b")
    router = env.router([pool_entry("e", a, b, skills=["embed"])], {"embed": ["e"]})
    pool = router.reg.embed["e"]
    a.kill()
    name, vectors = env.run(router.embed(["hi", "there"]))
    assert name == "e" and vectors == [[2.0, 1.0, 0.0], [5.0, 1.0, 0.0]]
    assert states(pool) == ["down", "up"] and calls(b) == 1


def test_a_rate_limited_replica_waits_out_retry_after(env: Env, upstreams: Any) -> None:
    a, b = upstreams("a"), upstreams("b")
    router = env.router([pool_entry("m", a, b)], {"default": ["m"]})
    pool = router.reg.chat["m"]
    a.mode("ratelimit")  # 429 with Retry-After: 1
    routed = env.run(router.complete(dict(BODY), Ask()))
    assert routed.data["choices"][0]["message"]["content"] == "answer from b"
    a.mode("ok")
    env.run(router.probe_once())
    assert states(pool) == ["down", "up"]  # not before Retry-After has passed
    time.sleep(1.1)
    env.run(router.probe_once())
    assert states(pool) == ["up", "up"]


def test_streams_move_to_another_replica_before_the_first_event(env: Env,
                                                                upstreams: Any) -> None:
    a, b = upstreams("a"), upstreams("b")
    a.mode("hang")
    router = env.router([pool_entry("m", a, b, timeout_seconds=0.5)], {"default": ["m"]})
    pool = router.reg.chat["m"]

    async def collect() -> bytes:
        started = await router.stream(dict(BODY), Ask())
        events = started if isinstance(started, tuple) else (started.model, started.events)
        return b"".join([e async for e in events[1]])

    text = env.run(collect())
    assert b"answer" in text and b"from" in text and b"b " in text and text.endswith(
        b"data: [DONE]\n\n")
    assert states(pool) == ["down", "up"] and "timeout" in pool.status()[0]["last_error"]
    assert pool.status()[1]["in_flight"] == 0  # the finished stream gave its slot back


def test_every_replica_failing_is_one_failure_for_the_router(env: Env,
                                                             upstreams: Any) -> None:
    a, b, other = upstreams("a"), upstreams("b"), upstreams("other")
    a.mode("error500")
    b.mode("error500")
    router = env.router([pool_entry("m", a, b), model_entry(other)],
                        {"default": ["m", "other"]})
    routed = env.run(router.complete(dict(BODY), Ask()))
    assert routed.model == "other" and routed.depth == 1  # the chain's next model
    with pytest.raises(AllFailed) as failed:
        env.run(router.complete(dict(BODY), Ask(model="m"), names=["m"]))
    assert a.url in str(failed.value) and b.url in str(failed.value)  # says which replicas
    assert calls(a) == 2 and calls(b) == 2  # all down: each was still tried (last resort)


@pytest.mark.parametrize(("entry", "message"), [
    ({"endpoint": "http://127.0.0.1:1/v1", "endpoints": ["http://127.0.0.1:2/v1"]},
     "both endpoint and endpoints"),
    ({"endpoints": ["http://127.0.0.1:1/v1", "http://127.0.0.1:1/v1/"]}, "same endpoint twice"),
    ({"endpoints": ["http://127.0.0.1:1/v1", "127.0.0.1:2"]}, "is not a base URL"),
    ({}, "needs endpoint"),
])
def test_bad_replica_config_is_refused_clearly(env: Env, entry: dict[str, Any],
                                               message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        env.router([{"name": "m", "backend": "openai", **entry}], {})


def test_a_pool_is_local_only_when_every_replica_is(env: Env) -> None:
    router = env.router([
        {"name": "here", "endpoints": ["http://127.0.0.1:1/v1", "http://[::1]:2/v1"]},
        {"name": "mixed", "endpoints": ["http://127.0.0.1:1/v1", "http://gpu.lan:8000/v1"]}],
        {})
    assert router.reg.chat["here"].profile.privacy == "local"
    assert router.reg.chat["mixed"].profile.privacy == "remote"
    assert isinstance(router.reg.chat["here"], ReplicaPool)


@pytest.mark.skipif(chromium_path() is None,
                    reason="Debian's chromium is not installed (tests/apt-packages.txt)")
def test_replica_states_in_the_api_and_on_the_status_page(make_config: Any, start_daemon: Any,
                                                          upstreams: Any,
                                                          tmp_path: Path) -> None:
    a, b = upstreams("a"), upstreams("b")
    config = make_config(pipeline={"summarize": False}, router={
        "models": [pool_entry("m", a, b)], "routes": {"default": ["m"]},
        "health_interval_seconds": 0})
    d = start_daemon(config)
    a.kill()
    with d.tcp() as c:
        for _ in range(2):
            r = c.post("/v1/chat/completions", headers=d.auth(),
                       json={"model": "auto", **BODY})
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == (
                "answer from b")
        models = {m["id"]: m for m in c.get("/v1/models", headers=d.auth()).json()["data"]}
    replicas = models["m"]["memoryd"]["replicas"]
    assert [(r["endpoint"], r["state"]) for r in replicas] == [(a.url, "down"), (b.url, "up")]
    assert replicas[1]["served"] == 2 and replicas[0]["failed"] == 1
    assert "replicas" not in models["auto"]["memoryd"]

    url = run_cli(config, "open", "--print-url").stdout.strip()
    browser = Chromium(tmp_path / "profile")
    try:
        browser.goto(url)
        browser.wait_for("document.body && document.body.dataset.loaded === 'yes'")
        assert browser.js("document.getElementById('replicas').hidden") is False
        rows = browser.js("[...document.querySelectorAll('#replicas tr[data-state]')]"
                          ".map(r => [r.cells[0].innerText, r.dataset.state])")
        assert rows == [[a.url, "down"], [b.url, "up"]]
    finally:
        browser.close()
