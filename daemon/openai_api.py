"""The OpenAI-compatible API: /v1/models, /v1/chat/completions, /v1/embeddings.

Handlers stay thin and cheap: the body is parsed once with `json`, routing decisions come
from tables built at start-up, upstream bytes go back unchanged when nothing is added,
and telemetry is queued for a background writer. memoryd's own request fields (all
optional, removed before the upstream sees the body):

- `task` (or header `X-Memoryd-Task`): compaction, classify, extract, reasoning, code...
- `local_only` (or header `X-Memoryd-Local-Only: 1`): never leave this machine
- `max_cost_usd`: skip models whose estimated cost is higher
- `memory`: `{"query": "...", "budget_tokens": 800}` (or `true`) puts a context pack of
  captured memory in front of the prompt (needs the memory:read scope too); the answer
  carries `memory.used` (the ids) and such a prompt goes to local models only, unless
  `router.memory_remote_models` names the remote model.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from daemon import telemetry
from daemon.memory import MemoryService
from daemon.registry import build_registry
from daemon.routing import AllFailed, Ask, NoRoute, Router
from daemon.telemetry import Telemetry
from models.errors import UpstreamError
from models.local_async import chunk_event
from models.openai_http import shared_client

log = logging.getLogger(__name__)
TRUE = ("1", "true", "yes", "on")
MAX_EMBED_INPUTS = 2048
MEMORY_PREAMBLE = ("Context from the user's own activity on this computer (captured by "
                   "memoryd; use it only where it helps answer):\n\n")


def _err(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message, "code": kind}},
                        status_code=status)


def build_router(service: MemoryService) -> Router:
    """The daemon's router: HTTP models called from here, embedded ones via the worker."""
    engine: Any = service.engine
    holder: dict[str, aiohttp.ClientSession] = {}

    def client() -> aiohttp.ClientSession:
        c = holder.get("c")
        if c is None:
            c = holder["c"] = shared_client()
        return c

    registry = build_registry(
        service.cfg, lambda name, msgs, params: engine.complete_local(name, msgs, params),
        lambda name, texts: engine.embed_local(name, texts), client)
    tel = Telemetry(service.cfg.data_path / "telemetry.sqlite3",
                    enabled=service.cfg.router.telemetry)
    return Router(registry, service.cfg.router, tel)


def _last_user_text(messages: list[Any]) -> str:
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str):
            return str(m["content"])
    return ""


async def _memory_context(service: MemoryService, messages: list[Any],
                          spec: Any) -> tuple[list[str], int, list[Any]]:
    """Given the messages and the request's `memory` field, return the ids of memories
    used, their token estimate, and the messages with the context pack in front."""
    if spec is True:
        spec = {}
    if not isinstance(spec, dict):
        raise ValueError('memory must be true or an object like {"query": "...", '
                         '"budget_tokens": 800}')
    query = spec.get("query") or _last_user_text(messages)
    budget = spec.get("budget_tokens", 800)
    if not isinstance(query, str) or not query.strip():
        raise ValueError("memory needs a query (or a user message to take it from)")
    if isinstance(budget, bool) or not isinstance(budget, int) or not 64 <= budget <= 32_000:
        raise ValueError("memory.budget_tokens must be a whole number from 64 to 32000")
    context = getattr(service, "context", None)
    if context is not None:
        pack = await asyncio.to_thread(context, query, budget)
        markdown = str(pack.get("markdown") or "")
        ids = [str(i["id"]) for i in pack.get("items") or [] if isinstance(i, dict) and "id" in i]
        tokens = int(pack.get("tokens") or len(markdown) // 3)
    else:  # a service without context packs: the best hits, cut to the budget
        hits = await asyncio.to_thread(service.search, query, 20)
        lines, ids, used = [], [], 0
        for h in hits:
            line = f"- {h.ts:%Y-%m-%d %H:%M} {h.title}: {' '.join(h.text.split())[:600]}"
            if used + len(line) // 3 > budget:
                break
            lines.append(line)
            ids.append(h.id)
            used += len(line) // 3
        markdown, tokens = "\n".join(lines), used
    if not markdown.strip():
        return [], 0, messages
    system = {"role": "system", "content": MEMORY_PREAMBLE + markdown}
    return ids, tokens, [system, *messages]


def router(service: MemoryService, require: Any) -> APIRouter:
    r = APIRouter()
    rt = build_router(service)
    need_memory = require("memory:read").dependency
    limit = service.cfg.api.max_request_bytes

    @r.get("/v1/models", dependencies=[require("complete")])
    async def models() -> dict[str, Any]:
        now = int(time.time())
        data = [{"id": "auto", "object": "model", "created": now, "owned_by": "memoryd",
                 "memoryd": {"routes": {k: list(v) for k, v in rt.reg.routes.items()}}}]
        for kind, pool in (("chat", rt.reg.chat), ("embedding", rt.reg.embed)):
            for name, backend in pool.items():
                p = backend.profile
                data.append({"id": name, "object": "model", "created": now,
                             "owned_by": "memoryd", "memoryd": {
                                 "kind": kind, "backend": p.backend, "privacy": p.privacy,
                                 "context_tokens": p.context_tokens, "skills": list(p.skills),
                                 "usd_per_mtok_in": p.usd_per_mtok_in,
                                 "usd_per_mtok_out": p.usd_per_mtok_out,
                                 "concurrency": p.concurrency,
                                 "circuit": rt.breakers[name].state}})
        return {"object": "list", "data": data}

    need_complete = require("complete").dependency

    async def chat(request: Request) -> Response:
        await need_complete(request)
        try:
            body = json.loads(await _read(request, limit))
        except _TooLarge:
            return _err(413, "too_large", f"request bodies are limited to {limit} bytes")
        except ValueError:
            return _err(400, "invalid_request", "the body is not JSON; send an OpenAI chat "
                        "completion request")
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not messages or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
            return _err(400, "invalid_request", "messages must be a non-empty list of "
                        "{\"role\": ..., \"content\": ...} objects")
        model = body.pop("model", None) or "auto"
        task = request.headers.get("x-memoryd-task") or body.pop("task", None) or "default"
        body.pop("task", None)
        local_only = request.headers.get("x-memoryd-local-only", "").lower() in TRUE
        local_only = body.pop("local_only", False) is True or local_only
        max_cost = body.pop("max_cost_usd", None)
        memory = body.pop("memory", None)
        stream = body.pop("stream", False) is True
        if not isinstance(model, str) or not isinstance(task, str) or len(task) > 64:
            return _err(400, "invalid_request", "model and task must be short strings")
        if max_cost is not None and (isinstance(max_cost, bool)
                                     or not isinstance(max_cost, (int, float))):
            return _err(400, "invalid_request", "max_cost_usd must be a number")
        used: list[str] = []
        memory_tokens = 0
        if memory is not None and memory is not False:
            await need_memory(request)
            used, memory_tokens, body["messages"] = await _memory_context(
                service, messages, memory)
        ask = Ask(task=task, model=model, local_only=local_only, memory_used=len(used),
                  max_cost_usd=float(max_cost) if max_cost is not None else None,
                  route="api-stream" if stream else "api")
        rt.start_probes()  # once, on the serving loop (uvicorn runs without lifespan)
        memory_info = {"used": used, "tokens": memory_tokens} if memory is not None else None
        try:
            if stream:
                name, events = await rt.stream(body, ask)
                return StreamingResponse(
                    _with_memory(events, memory_info), media_type="text/event-stream",
                    headers={"x-memoryd-model": name, "cache-control": "no-cache"})
            routed = await rt.complete(body, ask)
        except NoRoute as exc:
            return _err(exc.status, exc.kind, str(exc))
        except AllFailed as exc:
            return _err(502, "upstream_failed", f"{exc}; see GET /v1/models for circuit "
                        "states, or retry later")
        except UpstreamError as exc:  # the request itself was refused: the caller's to fix
            return _err(exc.status or 400, "upstream_rejected", str(exc))
        content = routed.raw
        if memory_info is not None:
            content = json.dumps({**routed.data, "memory": memory_info},
                                 ensure_ascii=False).encode()
        return Response(content, media_type="application/json",
                        headers={"x-memoryd-model": routed.model,
                                 "x-memoryd-fallback-depth": str(routed.depth)})

    @r.post("/v1/embeddings", dependencies=[require("complete")])
    async def embeddings(request: Request) -> Response:
        try:
            body = json.loads(await _read(request, limit))
        except _TooLarge:
            return _err(413, "too_large", f"request bodies are limited to {limit} bytes")
        except ValueError:
            return _err(400, "invalid_request", "the body is not JSON")
        texts = body.get("input") if isinstance(body, dict) else None
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return _err(400, "invalid_request", "input must be a string or a list of strings")
        if len(texts) > MAX_EMBED_INPUTS:
            return _err(400, "invalid_request", f"at most {MAX_EMBED_INPUTS} inputs per call")
        fmt = body.get("encoding_format") or "float"
        try:
            name, vectors = await rt.embed(texts, str(body.get("model") or "auto"))
        except NoRoute as exc:
            return _err(exc.status, exc.kind, str(exc))
        except AllFailed as exc:
            return _err(502, "upstream_failed", str(exc))
        rows = []
        for i, v in enumerate(vectors):
            emb: Any = v if fmt == "float" else base64.b64encode(
                struct.pack(f"<{len(v)}f", *v)).decode()
            rows.append({"object": "embedding", "index": i, "embedding": emb})
        tokens = sum(len(t) for t in texts) // 4
        return JSONResponse({"object": "list", "model": name, "data": rows,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    @r.get("/v1/router/status", dependencies=[require("admin")])
    def router_status() -> dict[str, Any]:
        return {"circuits": rt.states(), "routes": {k: list(v) for k, v in rt.reg.routes.items()}}

    @r.get("/v1/telemetry/summary", dependencies=[require("admin")])
    def telemetry_summary(since_hours: float = Query(0, ge=0, le=24 * 366)) -> dict[str, Any]:
        rt.telemetry.flush(2.0)
        since = time.time() - since_hours * 3600 if since_hours else 0.0
        return telemetry.summary(rt.telemetry.path, since)

    @r.get("/metrics", dependencies=[require("admin")])
    def metrics() -> PlainTextResponse:
        rt.telemetry.flush(2.0)
        return PlainTextResponse(telemetry.prometheus(rt.telemetry.path, rt.states()),
                                 media_type="text/plain; version=0.0.4")

    # The hot path is a plain Starlette route (FastAPI's dependency solving and response
    # validation cost more than the routing itself); the APIRoute after it, which the
    # plain one shadows, only documents it in /openapi.json.
    r.routes.insert(0, Route("/v1/chat/completions", chat, methods=["POST"]))
    r.add_api_route("/v1/chat/completions", chat, methods=["POST"],
                    summary="OpenAI-compatible chat completions, routed (see module doc)")
    return r


class _TooLarge(Exception):
    pass


async def _read(request: Request, limit: int) -> bytes:
    """The body, refusing one over `limit` bytes even when it comes without a length
    (chunked): the Host-and-size guard only sees Content-Length."""
    if request.headers.get("content-length"):
        return await request.body()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


async def _with_memory(events: AsyncIterator[bytes],
                       memory: dict[str, Any] | None) -> AsyncIterator[bytes]:
    if memory is not None:  # a chunk without choices, as usage chunks are
        yield chunk_event({"id": "memoryd-memory", "object": "chat.completion.chunk",
                           "created": int(time.time()), "model": "memoryd", "choices": [],
                           "memory": memory})
    async for event in events:
        yield event
