"""The OpenAI-compatible API: /v1/models, /v1/chat/completions, /v1/embeddings.

Handlers stay thin and cheap: the body is parsed once with `json`, routing decisions come
from tables built at start-up, upstream bytes go back unchanged but for memoryd's
explanation spliced in (daemon/explain.py: a `memoryd` object in the JSON, or a leading
chunk without choices when streamed), and telemetry is queued for a background writer. memoryd's own request fields (all
optional, removed before the upstream sees the body):

- `task` (or header `X-Memoryd-Task`): compaction, classify, extract, reasoning, code...
- `local_only` (or header `X-Memoryd-Local-Only: 1`): never leave this machine
- `max_cost_usd`: skip models whose estimated cost is higher
- `memory`: `{"query": "...", "budget_tokens": 800}` (or `true`) puts a context pack of
  captured memory in front of the prompt (needs the memory:read scope too); the answer
  carries `memory.used` (the ids) and such a prompt goes to local models only, unless
  `router.memory_remote_models` names the remote model.
- `irreversible` (or header `X-Memoryd-Irreversible`): true, or a short description of
  the step; with [approvals] irreversible (the default) the request waits for the user's
  approval (daemon/approvals.py), as do the other requests [approvals] names. Denied or
  timed out, the caller gets a 403 that says which; `approval_timeout_seconds` shortens
  the wait for a caller that cannot wait as long.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import struct
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from daemon.api.scoped_tokens import TokenStore
from daemon.approvals.queue import Approvals, preview, reasons_for
from daemon.approvals.queue import shared as approvals_of
from daemon.errors import InvalidRequest
from daemon.owners import request_owners
from daemon.routing import telemetry
from daemon.routing.explain import attach, explain, failed_attempts, leading_chunk
from daemon.routing.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from daemon.routing.metrics import exposition as metrics_text
from daemon.routing.registry import build_registry
from daemon.routing.router import AllFailed, Ask, NoRoute, Plan, Router
from daemon.routing.telemetry import Decision, Telemetry
from daemon.service import MemoryService
from models.errors import UpstreamError
from models.openai_http import shared_client

log = logging.getLogger(__name__)
TRUE = ("1", "true", "yes", "on")
MAX_EMBED_INPUTS = 2048
MEMORY_PREAMBLE = ("Context from the user's own activity on this computer (captured by "
                   "memoryd; use it only where it helps answer):\n\n")


def _err(status: int, kind: str, message: str,
         why: dict[str, Any] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": {"type": kind, "message": message, "code": kind}}
    if why is not None:  # the routing explanation, when routing got that far
        body["memoryd"] = why
    return JSONResponse(body, status_code=status)


def _decided(rt: Router, why: dict[str, Any]) -> dict[str, Any]:
    """Record a request's explained decision in telemetry (off the request path)."""
    rt.telemetry.record(Decision(time.time(), why["request_id"], why["task"],
                                 why["model"] or "", "api", why))
    return why


def _irreversible_header(request: Request) -> str | bool:
    """`X-Memoryd-Irreversible: 1` (or a description of the step) marks a request."""
    value = request.headers.get("x-memoryd-irreversible", "").strip()
    if value.lower() in TRUE:
        return True
    return value if value and value.lower() not in ("0", "false", "no", "off") else False


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
                    enabled=service.cfg.router.telemetry,
                    keep_days=service.cfg.router.telemetry_keep_days)
    return Router(registry, service.cfg.router, tel)


def _last_user_text(messages: list[Any]) -> str:
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str):
            return str(m["content"])
    return ""


async def _memory_context(service: MemoryService, messages: list[Any],
                          spec: Any, owners: Any = None) -> tuple[list[str], int, list[Any]]:
    """Given the messages and the request's `memory` field, return the ids of memories
    used, their token estimate, and the messages with the context pack in front. Only
    memories of `owners` (the token's, daemon/owners.py) can enter the pack."""
    if spec is True:
        spec = {}
    if not isinstance(spec, dict):
        raise InvalidRequest('memory must be true or an object like {"query": "...", '
                         '"budget_tokens": 800}')
    query = spec.get("query") or _last_user_text(messages)
    budget = spec.get("budget_tokens", 800)
    if not isinstance(query, str) or not query.strip():
        raise InvalidRequest("memory needs a query (or a user message to take it from)")
    if isinstance(budget, bool) or not isinstance(budget, int) or not 64 <= budget <= 32_000:
        raise InvalidRequest("memory.budget_tokens must be a whole number from 64 to 32000")
    context = getattr(service, "context", None)
    if context is not None:
        pack = await asyncio.to_thread(
            lambda: context(query, budget, device=spec.get("device"), user=spec.get("user"),
                            owners=owners))
        markdown = str(pack.get("markdown") or "")
        ids = [str(i["id"]) for i in pack.get("items") or [] if isinstance(i, dict) and "id" in i]
        tokens = int(pack.get("tokens") or len(markdown) // 3)
    else:  # a service without context packs: the best hits, cut to the budget
        hits = await asyncio.to_thread(
            lambda: service.search(query, 20, device=spec.get("device"),
                                   user=spec.get("user"), owners=owners))
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
    tokens = TokenStore(service.cfg.data_path / "tokens.json")
    limit = service.cfg.api.max_request_bytes

    @r.get("/v1/models", dependencies=[require("complete")])
    async def models() -> dict[str, Any]:
        now = int(time.time())
        routes = {k: list(v) for k, v in rt.reg.routes.items()}
        data: list[dict[str, Any]] = [{"id": "auto", "object": "model", "created": now,
                                       "owned_by": "memoryd", "memoryd": {"routes": routes}}]
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
                data[-1]["memoryd"].update(backend.describe())  # a pool: its replicas
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
        irreversible = body.pop("irreversible", None) or _irreversible_header(request)
        wait_at_most = body.pop("approval_timeout_seconds", None)
        if not isinstance(model, str) or not isinstance(task, str) or len(task) > 64:
            return _err(400, "invalid_request", "model and task must be short strings")
        if max_cost is not None and (isinstance(max_cost, bool)
                                     or not isinstance(max_cost, (int, float))):
            return _err(400, "invalid_request", "max_cost_usd must be a number")
        if not isinstance(irreversible, (bool, str)) or (isinstance(irreversible, str)
                                                         and len(irreversible) > 300):
            return _err(400, "invalid_request", "irreversible must be true or a short "
                        "description of the step (at most 300 characters)")
        if wait_at_most is not None and (isinstance(wait_at_most, bool) or not isinstance(
                wait_at_most, (int, float)) or wait_at_most <= 0):
            return _err(400, "invalid_request", "approval_timeout_seconds must be a positive "
                        "number (it can only shorten [approvals] timeout_seconds)")
        used: list[str] = []
        memory_tokens = 0
        if memory is not None and memory is not False:
            await need_memory(request)
            used, memory_tokens, body["messages"] = await _memory_context(
                service, messages, memory, request_owners(request))
        ask = Ask(task=task, model=model, local_only=local_only, memory_used=len(used),
                  max_cost_usd=float(max_cost) if max_cost is not None else None,
                  route="api-stream" if stream else "api")
        rt.start_probes()  # once, on the serving loop (uvicorn runs without lifespan)
        memory_info = {"used": used, "tokens": memory_tokens} if memory is not None else None
        extra = {"memory": memory_info} if memory_info is not None else {}
        gates = service.cfg.approvals
        plan: Plan | None = None
        approval: dict[str, Any] | None = None
        try:
            plan = rt.decide(body, ask, "hold" if gates.memory_remote else "refuse")
            if irreversible or gates.tasks or gates.memory_remote or gates.max_cost_usd:
                reasons = reasons_for(gates, task, irreversible, plan, len(used))
                if reasons:
                    plan, approval, refusal = await _approve(
                        rt, approvals_of(service.cfg), request, body, ask, plan, reasons,
                        irreversible, used, stream, wait_at_most)
                    if refusal is not None:
                        why = _decided(rt, explain(plan, ask, request_id=uuid.uuid4().hex,
                                                   memory=memory_info, approval=approval,
                                                   refused=refusal[1]))
                        return _err(403, refusal[0], refusal[1], why)
            if stream:
                started = await rt.stream(body, ask, plan.chain)
                why = _decided(rt, explain(
                    plan, ask, request_id=started.request_id, model=started.model,
                    attempts=started.attempts, depth=started.depth, memory=memory_info,
                    approval=approval))
                return StreamingResponse(
                    _after(leading_chunk({**extra, "memoryd": why}), started.events),
                    media_type="text/event-stream",
                    headers={"x-memoryd-model": started.model, "cache-control": "no-cache",
                             "x-memoryd-fallback-depth": str(started.depth),
                             "x-memoryd-request-id": started.request_id})
            routed = await rt.complete(body, ask, plan.chain)
        except NoRoute as exc:
            _decided(rt, explain(plan, ask, request_id=uuid.uuid4().hex, memory=memory_info,
                                 approval=approval, refused=str(exc)))
            return _err(exc.status, exc.kind, str(exc))
        except AllFailed as exc:
            why = _decided(rt, explain(plan, ask, request_id=uuid.uuid4().hex,
                                       attempts=failed_attempts(exc), memory=memory_info,
                                       approval=approval, refused="every model failed"))
            return _err(502, "upstream_failed", f"{exc}; see GET /v1/models for circuit "
                        "states, or retry later", why)
        except UpstreamError as exc:  # the request itself was refused: the caller's to fix
            _decided(rt, explain(plan, ask, request_id=uuid.uuid4().hex, memory=memory_info,
                                 approval=approval, refused=f"upstream rejected it: {exc}"))
            return _err(exc.status or 400, "upstream_rejected", str(exc))
        why = _decided(rt, explain(plan, ask, request_id=routed.request_id, model=routed.model,
                                   attempts=routed.attempts, depth=routed.depth,
                                   memory=memory_info, approval=approval))
        return Response(attach(routed.raw, {**extra, "memoryd": why}),
                        media_type="application/json",
                        headers={"x-memoryd-model": routed.model,
                                 "x-memoryd-fallback-depth": str(routed.depth),
                                 "x-memoryd-request-id": routed.request_id})

    async def _approve(rt: Router, approvals: Approvals, request: Request,
                       body: dict[str, Any], ask: Ask, plan: Plan,
                       reasons: list[dict[str, str]], irreversible: str | bool,
                       used: list[str], stream: bool, wait_at_most: float | None
                       ) -> tuple[Plan, dict[str, Any], tuple[str, str] | None]:
        """File the request for approval and wait for the user. Return the plan to follow
        (memory may go remote once approved), the approval's record for the explanation,
        and (error type, message) when the answer is no."""
        if any(r["reason"] == "memory_remote" for r in reasons):
            plan = rt.decide(body, ask, "allow")  # where it goes if the user says yes
        what = {"preview": preview(body["messages"]), "model": ask.model,
                "irreversible": irreversible or False, "memory_ids": used,
                "est_cost_usd": round(plan.est_cost_usd, 6), "stream": stream}
        aid = approvals.file(task=ask.task, models=plan.chain, reasons=reasons, what=what,
                             requested_by=_who(request), timeout_seconds=wait_at_most)
        verdict = await approvals.wait(aid, request.is_disconnected)
        record = {"id": aid, "decision": verdict.status, "by": verdict.by,
                  "reason": verdict.reason, "waited_seconds": verdict.waited_seconds,
                  "needed_because": reasons}
        if verdict.approved:
            return plan, record, None
        kind = {"denied": "approval_denied", "timed_out": "approval_timed_out"}.get(
            verdict.status, "approval_abandoned")
        return plan, record, (kind, verdict.refusal(aid))

    def _who(request: Request) -> str:
        """Who asked, for the approval record: the scoped token's name, else the admin
        token, and the caller's User-Agent."""
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        name = tokens.name(given.strip()) if scheme.lower() == "bearer" and given else None
        who = f"token {name}" if name else "admin token" if given else "status page session"
        agent = request.headers.get("user-agent", "")
        return f"{who} ({agent[:80]})" if agent else who

    @r.post("/v1/embeddings", dependencies=[require("complete")],
            openapi_extra=EMBEDDINGS_OPENAPI)
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
        fmt = body.get("encoding_format", "float")
        if not isinstance(body.get("model", ""), str):
            return _err(400, "invalid_request", "model must be a string (a name, or auto)")
        if fmt not in ("float", "base64"):
            return _err(400, "invalid_request", "encoding_format must be float or base64")
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

    @r.get("/v1/router/decisions", dependencies=[require("admin")])
    def router_decisions(limit: int = Query(50, ge=1, le=1000),
                         request_id: str = Query("", max_length=64)) -> dict[str, Any]:
        """The newest explained routing decisions (or the one for `request_id`)."""
        rt.telemetry.flush(2.0)
        return {"decisions": telemetry.recent_decisions(rt.telemetry.path, limit, request_id)}

    @r.get("/v1/router/status", dependencies=[require("admin")])
    def router_status() -> dict[str, Any]:
        return {"circuits": rt.states(), "routes": {k: list(v) for k, v in rt.reg.routes.items()}}

    @r.get("/v1/telemetry/summary", dependencies=[require("admin")])
    def telemetry_summary(since_hours: float = Query(0, ge=0, le=24 * 366)) -> dict[str, Any]:
        rt.telemetry.flush(2.0)
        since = time.time() - since_hours * 3600 if since_hours else 0.0
        return telemetry.summary(rt.telemetry.path, since)

    @r.get("/metrics", dependencies=[require("admin")], response_class=PlainTextResponse)
    def metrics() -> Response:
        rt.telemetry.flush(2.0)
        return Response(metrics_text(rt.telemetry.path, rt.states),
                        media_type=METRICS_CONTENT_TYPE)

    # The hot path is a plain Starlette route (FastAPI's dependency solving and response
    # validation cost more than the routing itself); the APIRoute after it, which the
    # plain one shadows, only documents it in /openapi.json.
    r.routes.insert(0, Route("/v1/chat/completions", chat, methods=["POST"]))
    r.add_api_route("/v1/chat/completions", chat, methods=["POST"],
                    summary="OpenAI-compatible chat completions, routed (see module doc)")
    return r


# The body the embeddings handler parses by hand, documented for /openapi.json.
_EMBED_TEXT = {"type": "string"}  # size: the request body limit
EMBEDDINGS_OPENAPI: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {
        "type": "object", "required": ["input"],
        "properties": {
            "input": {"anyOf": [_EMBED_TEXT, {"type": "array", "items": _EMBED_TEXT,
                                              "minItems": 1,
                                              "maxItems": MAX_EMBED_INPUTS}]},
            "model": {"type": "string", "description": "a configured name, or auto"},
            "encoding_format": {"enum": ["float", "base64"]}}}}}}}


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


async def _after(first: bytes, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first  # memoryd's own chunk (no choices, as usage chunks), then the answer
    async for event in events:
        yield event
