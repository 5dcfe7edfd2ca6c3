"""The router: which model gets a request, and what happens when it fails.

Given a request (a task hint, a model name or "auto", privacy and budget limits), `plan`
returns the chain of models to try. `complete`, `stream` and `embed` walk that chain:
a model whose circuit is open is skipped; an error, a timeout, a 429 or a 5xx moves on to
the next model; when every model failed, the chain is walked again after a backoff
(`retries` times). A request the upstream refuses as malformed (4xx) is not retried: the
next model would refuse it too (unless it offers tools, which not every server takes).
Every attempt is recorded in telemetry.

Streaming: a failure before the first chunk falls back like any other; after the first
chunk the client already has part of one model's answer, so the stream ends with an
OpenAI-style error event (`data: {"error": …}`, no `[DONE]`), which the openai client
raises as an APIError.

Tool calls: an answer to a request that offers `tools` counts only when its tool calls
are usable (daemon/toolcalls.py); a broken one is recorded as `bad_tool_call:<why>` on
that model and the next model is asked. Such a stream is buffered whole before the
client sees it (see `Router.stream`).

`complete` returns a `Routed` and `stream` a `StreamStart`; both carry the attempt trail
(every model tried or skipped, the one that answered last) for explanations.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from daemon import backoff
from daemon.config import RouterConfig
from daemon.routing.breaker import CLOSED, HALF_OPEN, Breaker
from daemon.routing.planning import Ask, NoRoute, Plan, decide, prompt_chars
from daemon.routing.registry import Registry
from daemon.routing.telemetry import Attempt, Telemetry
from daemon.routing.toolcalls import answer_message, message_from_events, offers_tools
from daemon.routing.toolcalls import check as check_tool_calls
from daemon.routing.trail import AllFailed, Trail, check_tools_request
from models.errors import UpstreamError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Routed:
    raw: bytes
    data: dict[str, Any]
    model: str
    depth: int
    request_id: str
    # one {"model", "outcome" (ok | error | skipped), "error"} per model tried or skipped,
    # the one that answered last
    attempts: list[dict[str, str]] = field(default_factory=list)


@dataclass
class StreamStart:
    """A streamed answer that has begun: who took it, its SSE events, and the trail."""

    model: str
    events: AsyncIterator[bytes]
    attempts: list[dict[str, str]]
    depth: int
    request_id: str


async def _drain(events: AsyncIterator[bytes], got: list[bytes],
                 each_seconds: float) -> None:
    """Read the rest of a stream into `got` (each event within `each_seconds`)."""
    while True:
        try:
            got.append(await asyncio.wait_for(events.__anext__(), each_seconds))
        except StopAsyncIteration:
            return


async def _replay(events: list[bytes]) -> AsyncGenerator[bytes, None]:
    for event in events:
        yield event


def _stream_usage(events: list[bytes], body: dict[str, Any]) -> tuple[int, int]:
    for event in reversed(events):
        if b'"usage"' in event and event.startswith(b"data: {"):
            try:
                usage = json.loads(event[6:]).get("usage") or {}
                return (int(usage.get("prompt_tokens") or 0),
                        int(usage.get("completion_tokens") or 0))
            except (ValueError, AttributeError, TypeError):
                break
    return prompt_chars(body) // 4, max(0, len(events) - 2)


class Router:
    def __init__(self, registry: Registry, cfg: RouterConfig, telemetry: Telemetry) -> None:
        self.reg = registry
        self.cfg = cfg
        self.telemetry = telemetry
        names = set(registry.chat) | set(registry.embed)
        self.breakers = {n: Breaker(cfg.breaker_failures, cfg.breaker_reset_seconds)
                         for n in names}
        self._sems: dict[str, asyncio.Semaphore] = {}
        self._probes: asyncio.Task[None] | None = None

    # ---- planning -------------------------------------------------------------------
    def plan(self, body: dict[str, Any], ask: Ask) -> list[str]:
        """Given a chat request, return the models to try, in order.

        Raise NoRoute when the model is unknown or no model passes the privacy, size and
        budget filters (the message says which filter removed which model)."""
        return self.decide(body, ask).chain

    def decide(self, body: dict[str, Any], ask: Ask, memory_remote: str = "refuse") -> Plan:
        """See `daemon.routing.planning.decide`."""
        return decide(self.reg, self.cfg, body, ask, memory_remote)

    # ---- calls ----------------------------------------------------------------------
    def _sem(self, name: str, concurrency: int) -> asyncio.Semaphore:
        sem = self._sems.get(name)
        if sem is None:
            sem = self._sems[name] = asyncio.Semaphore(concurrency)
        return sem

    def _record(self, rid: str, ask: Ask, name: str, profile: Any, started: float,
                outcome: str, error: str, depth: int, tokens_in: int = 0, tokens_out: int = 0,
                ttft: float | None = None, tools: int = 0) -> None:
        cost = (tokens_in * profile.usd_per_mtok_in + tokens_out * profile.usd_per_mtok_out) / 1e6
        self.telemetry.record(Attempt(
            ts=time.time(), request_id=rid, route=ask.route, task=ask.task, model=name,
            backend=profile.backend, privacy=profile.privacy, tokens_in=tokens_in,
            tokens_out=tokens_out, cost_usd=cost,
            latency_ms=(time.perf_counter() - started) * 1000 if started else 0.0,
            ttft_ms=ttft, outcome=outcome, error_class=error, fallback_depth=depth,
            memory_used=ask.memory_used, tools=tools))

    async def _backoff(self, attempt_pass: int) -> None:
        await asyncio.sleep(backoff.delay(self.cfg.backoff_seconds, attempt_pass))

    async def complete(self, body: dict[str, Any], ask: Ask,
                       names: list[str] | None = None) -> Routed:
        """Answer a non-streamed chat request from the first model in the plan that can.

        A request offering tools is answered only with usable tool calls (daemon/toolcalls):
        a model whose calls are broken counts as failed and the next one is asked.
        Raise NoRoute, AllFailed, or a non-retryable UpstreamError (the request is bad)."""
        check_tools_request(body)
        tools = offers_tools(body)
        trail = Trail(self, names if names is not None else self.plan(body, ask), ask, tools)
        while (slot := await trail.next()) is not None:
            name, backend, profile, breaker = slot
            started = time.perf_counter()
            try:
                async with self._sem(name, profile.concurrency):
                    if backend.capabilities.local:  # a remote one times out on its own
                        raw, data = await asyncio.wait_for(backend.chat(body),
                                                           profile.timeout_seconds)
                    else:
                        raw, data = await backend.chat(body)
            except (UpstreamError, TimeoutError) as exc:
                trail.failed(name, started, exc)
                continue
            except BaseException:
                breaker.release()
                raise
            breaker.success()
            usage = data.get("usage") or {}
            tin = int(usage.get("prompt_tokens") or 0)
            tout = int(usage.get("completion_tokens") or 0)
            fault = check_tool_calls(body, answer_message(data)) if tools else None
            if fault is not None:
                trail.bad_tools(name, started, fault, tin, tout)
                continue
            trail.answered(name, started, tin, tout)
            return Routed(raw, data, name, trail.depth, trail.rid, trail.attempts)
        raise trail.all_failed()

    async def stream(self, body: dict[str, Any], ask: Ask,
                     names: list[str] | None = None) -> StreamStart:
        """Start a streamed answer; return the model that took it and its SSE events.

        Fallback happens until a model yields its first event; see the module docstring
        for what a failure after that looks like. A request offering tools is different:
        each model's whole stream is buffered and its tool calls checked before the
        client sees a byte, so a broken call (or a stream cut short) falls back too, and
        the good answer is replayed event by event."""
        check_tools_request(body)
        buffer = offers_tools(body)
        trail = Trail(self, names if names is not None else self.plan(body, ask), ask, buffer)
        while (slot := await trail.next()) is not None:
            name, backend, profile, breaker = slot
            started = time.perf_counter()
            sem = self._sem(name, profile.concurrency)
            await sem.acquire()
            events = backend.stream(body).__aiter__()
            got: list[bytes] = []
            try:
                got.append(await asyncio.wait_for(events.__anext__(), profile.timeout_seconds))
                ttft = (time.perf_counter() - started) * 1000
                if buffer:
                    await _drain(events, got, profile.timeout_seconds)
            except (UpstreamError, TimeoutError, StopAsyncIteration) as exc:
                sem.release()
                await events.aclose()
                trail.failed(name, started, exc)
                continue
            except BaseException:
                sem.release()
                breaker.release()
                await events.aclose()
                raise
            if not buffer:
                trail.attempts.append({"model": name, "outcome": "ok", "error": ""})
                return StreamStart(name, self._relay(
                    trail.rid, ask, name, events, got[0], started, ttft, trail.depth, sem, body),
                    trail.attempts, trail.depth, trail.rid)
            sem.release()  # the upstream is done; the replay holds no slot
            await events.aclose()
            breaker.success()
            fault = check_tool_calls(body, message_from_events(got))
            if fault is not None:
                tin, tout = _stream_usage(got, body)
                trail.bad_tools(name, started, fault, tin, tout)
                continue
            trail.attempts.append({"model": name, "outcome": "ok", "error": ""})
            return StreamStart(name, self._relay(
                trail.rid, ask, name, _replay(got[1:]), got[0], started, ttft, trail.depth,
                None, body), trail.attempts, trail.depth, trail.rid)
        raise trail.all_failed()

    async def _relay(self, rid: str, ask: Ask, name: str, events: AsyncGenerator[bytes, None],
                     first: bytes, started: float, ttft: float, depth: int,
                     sem: asyncio.Semaphore | None,
                     body: dict[str, Any]) -> AsyncIterator[bytes]:
        profile = self.reg.chat[name].profile
        breaker = self.breakers[name]
        chunks, usage = 0, None
        outcome, error = "cancelled", "client_gone"
        try:
            event = first
            while True:
                if b'"usage"' in event and event.startswith(b"data: {"):
                    try:
                        usage = json.loads(event[6:]).get("usage") or usage
                    except ValueError:
                        pass
                chunks += 1
                yield event
                try:
                    event = await events.__anext__()
                except StopAsyncIteration:
                    outcome, error = "ok", ""
                    breaker.success()
                    break
        except UpstreamError as exc:
            outcome, error = "error", exc.kind
            breaker.failure()
            yield b"data: " + json.dumps({"error": {
                "message": f"{name} failed mid-stream ({exc.kind}): {exc}; the answer above "
                           "is incomplete", "type": "upstream_error", "code": exc.kind}}
            ).encode() + b"\n\n"
        finally:
            if sem is not None:
                sem.release()
            if outcome == "cancelled":
                breaker.release()
            tin = int((usage or {}).get("prompt_tokens") or prompt_chars(body) // 4)
            tout = int((usage or {}).get("completion_tokens") or max(0, chunks - 2))
            self._record(rid, ask, name, profile, started, outcome, error, depth, tin, tout,
                         ttft, int(offers_tools(body)))
            await events.aclose()

    async def embed(self, texts: list[str], model: str = "auto",
                    route: str = "api") -> tuple[str, list[list[float]]]:
        """Embed texts with the named embedder, or the `embed` route's chain."""
        if model and model != "auto":
            if model not in self.reg.embed:
                raise NoRoute(f"embedding model {model!r} is not configured; known: "
                              f"{', '.join(sorted(self.reg.embed))}", 404, "model_not_found")
            names = [model]
        else:
            names = list(self.reg.routes["embed"])
        ask = Ask(task="embed", model=model, route=route)
        rid = uuid.uuid4().hex
        errors: list[tuple[str, UpstreamError]] = []
        tokens = sum(len(t) for t in texts) // 4
        for depth, name in enumerate(names):
            backend = self.reg.embed[name]
            breaker = self.breakers[name]
            if not breaker.allow():
                self._record(rid, ask, name, backend.profile, 0.0, "skipped", "circuit_open",
                             depth)
                continue
            started = time.perf_counter()
            try:
                vectors = await backend.embed(texts)
            except UpstreamError as exc:
                breaker.failure()
                self._record(rid, ask, name, backend.profile, started, "error", exc.kind, depth)
                errors.append((name, exc))
                continue
            breaker.success()
            self._record(rid, ask, name, backend.profile, started, "ok", "", depth, tokens, 0)
            return name, vectors
        raise AllFailed(errors)

    # ---- health ---------------------------------------------------------------------
    def states(self) -> dict[str, str]:
        return {n: b.state for n, b in sorted(self.breakers.items())}

    def start_probes(self) -> None:
        """Start background health probes on the running loop (once)."""
        if self._probes is None and self.cfg.health_interval_seconds > 0:
            self._probes = asyncio.get_running_loop().create_task(self._probe_loop())

    async def probe_once(self) -> None:
        backends = {n: b for n, b in {**self.reg.chat, **self.reg.embed}.items()
                    if not b.capabilities.local}
        for name, backend in backends.items():  # a pool re-admits its replicas that answer
            breaker = self.breakers[name]
            ok = await backend.probe()
            state = breaker.state
            if ok and state == HALF_OPEN:
                log.info("model %s answers its health probe again: closing its circuit", name)
                breaker.success()
            elif not ok and state == CLOSED:
                breaker.failure()

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.health_interval_seconds)
            try:
                await self.probe_once()
            except Exception as exc:  # a probe never takes the daemon down
                log.warning("health probe failed: %s", exc)


class LoopThread:
    """An asyncio loop in a daemon thread, for sync callers (the pipeline's ModelCalls)."""

    def __init__(self, name: str = "router-loop") -> None:
        self.loop = asyncio.new_event_loop()
        # Embedded models answer in executor threads; a summary waiting for the llama.cpp
        # lock must not leave embeddings (searches) queued behind it.
        self.loop.set_default_executor(ThreadPoolExecutor(32, thread_name_prefix=name))
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
