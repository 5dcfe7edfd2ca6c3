"""The OpenAI-compatible API: /v1/models, /v1/chat/completions, /v1/embeddings.

Handlers stay thin and cheap: they parse (the body once, with `json`) and map errors;
the work is daemon/routing/completions.py's, which HTTP-free front ends share. Routing
decisions come from tables built at start-up, upstream bytes go back unchanged but for
memoryd's explanation spliced in (daemon/routing/explain.py: a `memoryd` object in the
JSON, or a leading chunk without choices when streamed), and telemetry is queued for a
background writer. memoryd's own request fields (all optional, removed before the
upstream sees the body):

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

import base64
import json
import logging
import struct
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from daemon.api.auth import bearer, may_read_raw
from daemon.api.envelope import error_json
from daemon.api.scoped_tokens import TokenStore
from daemon.approvals.queue import for_service as approvals_of
from daemon.approvals.rules import fingerprint
from daemon.errors import InvalidRequest
from daemon.intake.redact import redact
from daemon.owners import request_owners
from daemon.routing import telemetry
from daemon.routing.completions import Answer, ChatRequest, Completions, Refused
from daemon.routing.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from daemon.routing.metrics import exposition as metrics_text
from daemon.routing.registry import build_registry
from daemon.routing.router import AllFailed, NoRoute, Router
from daemon.routing.telemetry import Telemetry
from daemon.service import MemoryService

if TYPE_CHECKING:  # aiohttp (~9 MB) is imported only once an HTTP model is called
    import aiohttp

log = logging.getLogger(__name__)
TRUE = ("1", "true", "yes", "on")
MAX_EMBED_INPUTS = 2048


def _err(status: int, kind: str, message: str,
         why: dict[str, Any] | None = None) -> JSONResponse:
    # the routing explanation, when routing got that far
    return error_json(status, kind, message, code=kind,
                      extra={"memoryd": why} if why is not None else None)


def build_router(service: MemoryService) -> Router:
    """The daemon's router: HTTP models called from here, embedded ones via the worker."""
    engine = service.engine
    holder: dict[str, aiohttp.ClientSession] = {}

    def client() -> aiohttp.ClientSession:
        c = holder.get("c")
        if c is None:
            from models.openai_http import shared_client

            c = holder["c"] = shared_client()
        return c

    registry = build_registry(
        service.cfg, lambda name, msgs, params: engine.complete_local(name, msgs, params),
        lambda name, texts: engine.embed_local(name, texts), client)
    tel = Telemetry(service.cfg.data_path / "telemetry.sqlite3",
                    enabled=service.cfg.router.telemetry,
                    keep_days=service.cfg.router.telemetry_keep_days)
    return Router(registry, service.cfg.router, tel)


def _irreversible_header(headers: Mapping[str, str]) -> str | bool:
    """`X-Memoryd-Irreversible: 1` (or a description of the step) marks a request."""
    value = headers.get("x-memoryd-irreversible", "").strip()
    if value.lower() in TRUE:
        return True
    return value if value and value.lower() not in ("0", "false", "no", "off") else False


def parse_chat(body: Any, headers: Mapping[str, str]) -> ChatRequest:
    """A ChatRequest from an OpenAI chat body and the request's headers, memoryd's own
    fields taken out of the body; raise InvalidRequest saying what to send instead."""
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        raise InvalidRequest("messages must be a non-empty list of "
                             "{\"role\": ..., \"content\": ...} objects")
    model = body.pop("model", None) or "auto"
    task = headers.get("x-memoryd-task") or body.pop("task", None) or "default"
    body.pop("task", None)
    local_only = headers.get("x-memoryd-local-only", "").lower() in TRUE
    local_only = body.pop("local_only", False) is True or local_only
    max_cost = body.pop("max_cost_usd", None)
    irreversible = body.pop("irreversible", None) or _irreversible_header(headers)
    wait_at_most = body.pop("approval_timeout_seconds", None)
    if not isinstance(model, str) or not isinstance(task, str) or len(task) > 64:
        raise InvalidRequest("model and task must be short strings")
    if max_cost is not None and (isinstance(max_cost, bool)
                                 or not isinstance(max_cost, (int, float))):
        raise InvalidRequest("max_cost_usd must be a number")
    if not isinstance(irreversible, (bool, str)) or (isinstance(irreversible, str)
                                                     and len(irreversible) > 300):
        raise InvalidRequest("irreversible must be true or a short description of the "
                             "step (at most 300 characters)")
    if isinstance(irreversible, str):  # stored with the approval and logged: no secrets
        irreversible = redact(irreversible)
    if wait_at_most is not None and (isinstance(wait_at_most, bool) or not isinstance(
            wait_at_most, (int, float)) or wait_at_most <= 0):
        raise InvalidRequest("approval_timeout_seconds must be a positive number (it can "
                             "only shorten [approvals] timeout_seconds)")
    key = body.pop("idempotency_key", None) or headers.get("idempotency-key", "")
    if not isinstance(key, str) or len(key) > 200:
        raise InvalidRequest("the Idempotency-Key must be a string of at most 200 characters")
    memory, stream = body.pop("memory", None), body.pop("stream", False) is True
    # before memory is added to the messages: the same request sent again matches
    request_fp = fingerprint({"caller": headers.get("authorization", ""), "task": task,
                              "model": model, "memory": memory, "irreversible": irreversible,
                              "stream": stream, "local_only": local_only,
                              "max_cost": max_cost, **body})
    return ChatRequest(body=body, model=model, task=task, local_only=local_only,
                       max_cost_usd=float(max_cost) if max_cost is not None else None,
                       memory=memory, stream=stream, irreversible=irreversible,
                       approval_timeout_seconds=wait_at_most, idempotency_key=key,
                       fingerprint=request_fp)


def _answer(answer: Answer) -> Response:
    headers = {"x-memoryd-model": answer.model,
               "x-memoryd-fallback-depth": str(answer.depth),
               "x-memoryd-request-id": answer.request_id}
    if answer.events is not None:
        return StreamingResponse(answer.events, media_type="text/event-stream",
                                 headers={**headers, "cache-control": "no-cache"})
    return Response(answer.raw, media_type="application/json", headers=headers)


def _embedding_rows(vectors: list[list[float]], fmt: str) -> list[dict[str, Any]]:
    rows = []
    for i, v in enumerate(vectors):
        emb: Any = v if fmt == "float" else base64.b64encode(
            struct.pack(f"<{len(v)}f", *v)).decode()
        rows.append({"object": "embedding", "index": i, "embedding": emb})
    return rows


def _embed_request(body: Any) -> tuple[list[str], str, str]:
    """The texts, model and encoding of an embeddings body; raise InvalidRequest."""
    texts = body.get("input") if isinstance(body, dict) else None
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidRequest("input must be a string or a list of strings")
    if len(texts) > MAX_EMBED_INPUTS:
        raise InvalidRequest(f"at most {MAX_EMBED_INPUTS} inputs per call")
    fmt = body.get("encoding_format", "float")
    if not isinstance(body.get("model", ""), str):
        raise InvalidRequest("model must be a string (a name, or auto)")
    if fmt not in ("float", "base64"):
        raise InvalidRequest("encoding_format must be float or base64")
    return texts, str(body.get("model") or "auto"), fmt


class OpenAIRoutes:
    """The handlers: parse, call the router or the completion service, map errors."""

    def __init__(self, service: MemoryService, require: Any) -> None:
        self.rt = build_router(service)
        self.completions = Completions(service, self.rt, approvals_of(service))
        self.need_memory = require("memory:read").dependency
        self.need_complete = require("complete").dependency
        self.tokens = TokenStore(service.cfg.data_path / "tokens.json")
        self.limit = service.cfg.api.max_request_bytes

    async def _json(self, request: Request, what: str) -> Any:
        try:
            return json.loads(await _read(request, self.limit))
        except _TooLarge:
            raise _Reply(_err(413, "too_large", "request bodies are limited to "
                              f"{self.limit} bytes")) from None
        except ValueError:
            raise _Reply(_err(400, "invalid_request", f"the body is not JSON{what}")) from None

    async def chat(self, request: Request) -> Response:
        await self.need_complete(request)
        try:
            body = await self._json(request, "; send an OpenAI chat completion request")
            req = parse_chat(body, request.headers)
        except _Reply as reply:
            return reply.response
        except InvalidRequest as exc:
            return _err(400, "invalid_request", str(exc))
        if req.memory is not None and req.memory is not False:
            await self.need_memory(request)
        req.owners = request_owners(request)
        req.raw = may_read_raw(request)
        req.requested_by = self._who(request)
        req.disconnected = request.is_disconnected
        try:
            return _answer(await self.completions.chat(req))
        except Refused as exc:
            return _err(exc.status, exc.kind, str(exc), exc.why)

    def _who(self, request: Request) -> str:
        """Who asked, for the approval record: the scoped token's name, else the admin
        token, and the caller's User-Agent."""
        given = bearer(request.headers.get("authorization"))
        name = self.tokens.name(given) if given else None
        who = f"token {name}" if name else "admin token" if given else "status page session"
        agent = request.headers.get("user-agent", "")
        return f"{who} ({agent[:80]})" if agent else who

    async def embeddings(self, request: Request) -> Response:
        try:
            texts, model, fmt = _embed_request(await self._json(request, ""))
            name, vectors = await self.rt.embed(texts, model)
        except _Reply as reply:
            return reply.response
        except InvalidRequest as exc:
            return _err(400, "invalid_request", str(exc))
        except NoRoute as exc:
            return _err(exc.status, exc.kind, str(exc))
        except AllFailed as exc:
            return _err(502, "upstream_failed", str(exc))
        tokens = sum(len(t) for t in texts) // 4
        return JSONResponse({"object": "list", "model": name,
                             "data": _embedding_rows(vectors, fmt),
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    async def models(self) -> dict[str, Any]:
        now = int(time.time())
        rt = self.rt
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
                                 "circuit": rt.breakers[name].state,
                                 **backend.describe()}})  # a replica pool: its replicas
        return {"object": "list", "data": data}

    def router_decisions(self, limit: int = Query(50, ge=1, le=1000),
                         request_id: str = Query("", max_length=64)) -> dict[str, Any]:
        """The newest explained routing decisions (or the one for `request_id`)."""
        self.rt.telemetry.flush(2.0)
        return {"decisions": telemetry.recent_decisions(self.rt.telemetry.path, limit,
                                                        request_id)}

    def router_status(self) -> dict[str, Any]:
        return {"circuits": self.rt.states(),
                "routes": {k: list(v) for k, v in self.rt.reg.routes.items()}}

    def telemetry_summary(self, since_hours: float = Query(0, ge=0, le=24 * 366)
                          ) -> dict[str, Any]:
        self.rt.telemetry.flush(2.0)
        since = time.time() - since_hours * 3600 if since_hours else 0.0
        return telemetry.summary(self.rt.telemetry.path, since)

    def metrics(self) -> Response:
        self.rt.telemetry.flush(2.0)
        return Response(metrics_text(self.rt.telemetry.path, self.rt.states),
                        media_type=METRICS_CONTENT_TYPE)


def router(service: MemoryService, require: Any) -> APIRouter:
    r = APIRouter()
    h = OpenAIRoutes(service, require)
    r.add_api_route("/v1/models", h.models, methods=["GET"], dependencies=[require("complete")])
    r.add_api_route("/v1/embeddings", h.embeddings, methods=["POST"],
                    dependencies=[require("complete")], openapi_extra=EMBEDDINGS_OPENAPI)
    admin = [require("admin")]
    r.add_api_route("/v1/router/decisions", h.router_decisions, methods=["GET"],
                    dependencies=admin)
    r.add_api_route("/v1/router/status", h.router_status, methods=["GET"], dependencies=admin)
    r.add_api_route("/v1/telemetry/summary", h.telemetry_summary, methods=["GET"],
                    dependencies=admin)
    r.add_api_route("/metrics", h.metrics, methods=["GET"], dependencies=admin,
                    response_class=PlainTextResponse)
    # The hot path is a plain Starlette route (FastAPI's dependency solving and response
    # validation cost more than the routing itself); the APIRoute after it, which the
    # plain one shadows, only documents it in /openapi.json.
    r.routes.insert(0, Route("/v1/chat/completions", h.chat, methods=["POST"]))
    r.add_api_route("/v1/chat/completions", h.chat, methods=["POST"],
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


class _Reply(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__()
        self.response = response


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
