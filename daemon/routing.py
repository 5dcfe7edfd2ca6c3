"""The router: which model gets a request, and what happens when it fails.

Given a request (a task hint, a model name or "auto", privacy and budget limits), `plan`
returns the chain of models to try. `complete`, `stream` and `embed` walk that chain:
a model whose circuit is open is skipped; an error, a timeout, a 429 or a 5xx moves on to
the next model; when every model failed, the chain is walked again after a backoff
(`retries` times). A request the upstream refuses as malformed (4xx) is not retried: the
next model would refuse it too. Every attempt is recorded in telemetry.

Streaming: a failure before the first chunk falls back like any other; after the first
chunk the client already has part of one model's answer, so the stream ends with an
OpenAI-style error event (`data: {"error": …}`, no `[DONE]`), which the openai client
raises as an APIError.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from daemon.breaker import CLOSED, HALF_OPEN, Breaker
from daemon.config import RouterConfig
from daemon.registry import Registry
from daemon.telemetry import Attempt, Telemetry
from models.errors import UpstreamError
from models.openai_http import OpenAIBackend

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_MAX_TOKENS = 256


class NoRoute(ValueError):
    """No model may take this request (unknown model, privacy, size or budget)."""

    def __init__(self, message: str, status: int = 400, kind: str = "no_route") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


class AllFailed(Exception):
    """Every model in the chain failed; `errors` says how, model by model."""

    def __init__(self, errors: list[tuple[str, UpstreamError]]) -> None:
        detail = "; ".join(f"{m}: {e.kind} ({e})" for m, e in errors) or (
            "every model's circuit is open after recent failures; memoryd tries them again "
            "once router.breaker_reset_seconds have passed")
        super().__init__(f"every model for this request failed: {detail}")
        self.errors = errors


@dataclass(frozen=True)
class Ask:
    """How a request wants to be routed (everything but its payload)."""

    task: str = "default"
    model: str = "auto"
    local_only: bool = False
    memory_used: int = 0  # memories placed in the prompt: only local or allowed models
    max_cost_usd: float | None = None
    route: str = "api"


@dataclass
class Routed:
    raw: bytes
    data: dict[str, Any]
    model: str
    depth: int
    request_id: str


def _prompt_chars(body: dict[str, Any]) -> int:
    n = 0
    for m in body.get("messages") or ():
        c = m.get("content") if isinstance(m, dict) else None
        if isinstance(c, str):
            n += len(c)
        elif isinstance(c, list):
            n += sum(len(p.get("text") or "") for p in c if isinstance(p, dict))
    return n


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
        reg = self.reg
        chain = reg.routes.get(ask.task) or reg.routes["default"]
        if ask.model and ask.model != "auto":
            if ask.model not in reg.chat:
                raise NoRoute(f"model {ask.model!r} is not configured; known models: "
                              f"{', '.join(sorted(reg.chat))} (or \"auto\")", 404,
                              "model_not_found")
            names = [ask.model, *(n for n in chain if n != ask.model)]
        elif ask.task in self.cfg.routes or ask.task == "default":
            names = list(chain)
        else:  # no chain configured for this task: models with the skill first, cheapest first
            skilled = sorted((n for n, b in reg.chat.items() if ask.task in b.profile.skills),
                             key=lambda n: reg.chat[n].profile.usd_per_mtok_in)
            names = [*skilled, *(n for n in chain if n not in skilled)]
        prompt_tokens = _prompt_chars(body) // 3 + 8 * len(body.get("messages") or ())
        out_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens")
                         or DEFAULT_MAX_TOKENS)
        keep, why = [], []
        for n in names:
            p = reg.chat[n].profile
            if p.privacy == "remote" and ask.local_only:
                why.append(f"{n} is remote and the request is local-only")
            elif p.privacy == "remote" and ask.memory_used and n not in reg.memory_remote:
                why.append(f"{n} is remote and the prompt carries captured memory (allow it "
                           "with router.memory_remote_models)")
            elif prompt_tokens + out_tokens > p.context_tokens:
                why.append(f"{n}'s context ({p.context_tokens} tokens) is smaller than the "
                           f"request (~{prompt_tokens} + {out_tokens} tokens)")
            elif ask.max_cost_usd is not None and (
                    prompt_tokens * p.usd_per_mtok_in + out_tokens * p.usd_per_mtok_out
            ) / 1e6 > ask.max_cost_usd:
                why.append(f"{n} may cost more than max_cost_usd={ask.max_cost_usd}")
            else:
                keep.append(n)
        if not keep:
            raise NoRoute("no model can take this request: " + "; ".join(why))
        if ask.model in reg.chat and ask.model not in keep:  # named, and may not take it
            raise NoRoute(f"model {ask.model!r} cannot take this request: {why[0]}")
        return keep

    # ---- calls ----------------------------------------------------------------------
    def _sem(self, name: str, concurrency: int) -> asyncio.Semaphore:
        sem = self._sems.get(name)
        if sem is None:
            sem = self._sems[name] = asyncio.Semaphore(concurrency)
        return sem

    def _record(self, rid: str, ask: Ask, name: str, profile: Any, started: float,
                outcome: str, error: str, depth: int, tokens_in: int = 0, tokens_out: int = 0,
                ttft: float | None = None) -> None:
        cost = (tokens_in * profile.usd_per_mtok_in + tokens_out * profile.usd_per_mtok_out) / 1e6
        self.telemetry.record(Attempt(
            ts=time.time(), request_id=rid, route=ask.route, task=ask.task, model=name,
            backend=profile.backend, privacy=profile.privacy, tokens_in=tokens_in,
            tokens_out=tokens_out, cost_usd=cost,
            latency_ms=(time.perf_counter() - started) * 1000 if started else 0.0,
            ttft_ms=ttft, outcome=outcome, error_class=error, fallback_depth=depth,
            memory_used=ask.memory_used))

    async def _backoff(self, attempt_pass: int) -> None:
        await asyncio.sleep(self.cfg.backoff_seconds * (2 ** (attempt_pass - 1)))

    async def complete(self, body: dict[str, Any], ask: Ask,
                       names: list[str] | None = None) -> Routed:
        """Answer a non-streamed chat request from the first model in the plan that can.

        Raise NoRoute, AllFailed, or a non-retryable UpstreamError (the request is bad)."""
        names = names if names is not None else self.plan(body, ask)
        rid = uuid.uuid4().hex
        errors: list[tuple[str, UpstreamError]] = []
        depth = 0
        for attempt_pass in range(self.cfg.retries + 1):
            if attempt_pass:
                await self._backoff(attempt_pass)
            for name in names:
                backend = self.reg.chat[name]
                profile = backend.profile
                breaker = self.breakers[name]
                if not breaker.allow():
                    self._record(rid, ask, name, profile, 0.0, "skipped", "circuit_open", depth)
                    continue
                started = time.perf_counter()
                try:
                    async with self._sem(name, profile.concurrency):
                        if profile.backend == "openai":  # aiohttp enforces its own timeout
                            raw, data = await backend.chat(body)
                        else:
                            raw, data = await asyncio.wait_for(backend.chat(body),
                                                               profile.timeout_seconds)
                except (UpstreamError, TimeoutError) as exc:
                    err = exc if isinstance(exc, UpstreamError) else UpstreamError(
                        "timeout", f"{name} took longer than {profile.timeout_seconds:g} s")
                    self._record(rid, ask, name, profile, started, "error", err.kind, depth)
                    if not err.retryable:
                        breaker.release()
                        raise err from None
                    breaker.failure(err.retry_after if err.kind == "rate_limited" else None)
                    errors.append((name, err))
                    depth += 1
                    continue
                except BaseException:
                    breaker.release()
                    raise
                breaker.success()
                usage = data.get("usage") or {}
                self._record(rid, ask, name, profile, started, "ok", "", depth,
                             int(usage.get("prompt_tokens") or 0),
                             int(usage.get("completion_tokens") or 0))
                return Routed(raw, data, name, depth, rid)
        raise AllFailed(errors)

    async def stream(self, body: dict[str, Any], ask: Ask,
                     names: list[str] | None = None) -> tuple[str, AsyncIterator[bytes]]:
        """Start a streamed answer; return the model that took it and its SSE events.

        Fallback happens until a model yields its first event; see the module docstring
        for what a failure after that looks like."""
        names = names if names is not None else self.plan(body, ask)
        rid = uuid.uuid4().hex
        errors: list[tuple[str, UpstreamError]] = []
        depth = 0
        for attempt_pass in range(self.cfg.retries + 1):
            if attempt_pass:
                await self._backoff(attempt_pass)
            for name in names:
                backend = self.reg.chat[name]
                profile = backend.profile
                breaker = self.breakers[name]
                if not breaker.allow():
                    self._record(rid, ask, name, profile, 0.0, "skipped", "circuit_open", depth)
                    continue
                started = time.perf_counter()
                sem = self._sem(name, profile.concurrency)
                await sem.acquire()
                events = backend.stream(body).__aiter__()
                try:
                    first = await asyncio.wait_for(events.__anext__(), profile.timeout_seconds)
                except (UpstreamError, TimeoutError, StopAsyncIteration) as exc:
                    sem.release()
                    await events.aclose()
                    err = exc if isinstance(exc, UpstreamError) else UpstreamError(
                        "timeout" if isinstance(exc, TimeoutError) else "truncated",
                        f"{name} sent no first chunk")
                    self._record(rid, ask, name, profile, started, "error", err.kind, depth)
                    if not err.retryable:
                        breaker.release()
                        raise err from None
                    breaker.failure(err.retry_after if err.kind == "rate_limited" else None)
                    errors.append((name, err))
                    depth += 1
                    continue
                except BaseException:
                    sem.release()
                    breaker.release()
                    await events.aclose()
                    raise
                ttft = (time.perf_counter() - started) * 1000
                return name, self._relay(rid, ask, name, events, first, started, ttft, depth,
                                         sem, body)
        raise AllFailed(errors)

    async def _relay(self, rid: str, ask: Ask, name: str, events: AsyncIterator[bytes],
                     first: bytes, started: float, ttft: float, depth: int,
                     sem: asyncio.Semaphore, body: dict[str, Any]) -> AsyncIterator[bytes]:
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
            sem.release()
            if outcome == "cancelled":
                breaker.release()
            tin = int((usage or {}).get("prompt_tokens") or _prompt_chars(body) // 4)
            tout = int((usage or {}).get("completion_tokens") or max(0, chunks - 2))
            self._record(rid, ask, name, profile, started, outcome, error, depth, tin, tout,
                         ttft)
            await events.aclose()  # type: ignore[attr-defined]

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
                    if isinstance(b, OpenAIBackend)}
        for name, backend in backends.items():
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
