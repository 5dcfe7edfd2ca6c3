"""The completion service: one routed chat request from parsed fields to an answer.

It knows nothing of HTTP. Given a `ChatRequest` (daemon/routing/api.py parses one from
an OpenAI body and headers; any other front end can build one), `Completions.chat` puts
memory in front of the prompt, plans the route, asks the user's approval where
[approvals] says so, calls the router, explains the decision and records it in
telemetry. It returns an `Answer` or raises `Refused` (status, type, message and the
explanation), which a front end maps to its own error shape.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from daemon.approvals.queue import Approvals, KeyConflict
from daemon.approvals.rules import preview, reasons_for
from daemon.errors import InvalidRequest, PermanentError
from daemon.owners import Owners
from daemon.routing.explain import attach, explain, failed_attempts, leading_chunk
from daemon.routing.router import AllFailed, Ask, NoRoute, Plan, Router
from daemon.routing.telemetry import Decision
from daemon.service import MemoryService
from models.errors import UpstreamError

MEMORY_PREAMBLE = ("Context from the user's own activity on this computer (captured by "
                   "memoryd; use it only where it helps answer):\n\n")


@dataclass
class ChatRequest:
    """A chat request with memoryd's own fields taken out of the OpenAI `body`."""

    body: dict[str, Any]  # what the upstream sees (messages replaced when memory is used)
    model: str = "auto"
    task: str = "default"
    local_only: bool = False
    max_cost_usd: float | None = None
    memory: Any = None  # None/False: no memory; True or {"query", "budget_tokens", …}
    stream: bool = False
    irreversible: str | bool = False
    approval_timeout_seconds: float | None = None
    owners: Owners | None = None  # whose memories may enter the prompt (the token's)
    raw: bool = True  # raw events may enter it too (False: memories only, memory:read)
    requested_by: str = ""  # for the approval record
    # `Idempotency-Key` and the request's fingerprint: a caller re-attaches to its
    # approval after a daemon restart by sending the same request with the same key
    idempotency_key: str = ""
    fingerprint: str = ""
    # the caller went away: an approval stops waiting for it
    disconnected: Callable[[], Awaitable[bool]] | None = None


@dataclass
class Answer:
    """A routed answer: `raw` (the JSON with memoryd's explanation in it) when not
    streamed, else `events` (memoryd's leading chunk, then the model's SSE events)."""

    model: str
    depth: int
    request_id: str
    raw: bytes = b""
    events: AsyncIterator[bytes] | None = None


class Refused(PermanentError):
    """The request gets no answer: `status` and `kind` for the caller, `why` the routing
    explanation when routing got that far."""

    def __init__(self, status: int, kind: str, message: str,
                 why: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.why = status, kind, why


@dataclass
class _Trace:
    """What one request's explanation needs, gathered as it goes."""

    ask: Ask
    memory: dict[str, Any] | None = None
    plan: Plan | None = None
    approval: dict[str, Any] | None = None


class Completions:
    """Routed chat completions over `router`, with memory from `service`."""

    def __init__(self, service: MemoryService, router: Router, approvals: Approvals) -> None:
        self.service = service
        self.router = router
        self.approvals = approvals

    async def chat(self, req: ChatRequest) -> Answer:
        """Answer `req`; raise Refused (no route, every model failed, the upstream
        rejected it, the user said no) or InvalidRequest (a malformed memory field)."""
        used: list[str] = []
        tokens = 0
        if req.memory is not None and req.memory is not False:
            used, tokens, req.body["messages"] = await self._memory_context(req)
        ask = Ask(task=req.task, model=req.model, local_only=req.local_only,
                  memory_used=len(used), max_cost_usd=req.max_cost_usd,
                  route="api-stream" if req.stream else "api")
        self.router.start_probes()  # once, on the serving loop
        t = _Trace(ask, {"used": used, "tokens": tokens} if req.memory is not None else None)
        try:
            t.plan = await self._plan(req, t, len(used))
            if req.stream:
                return await self._stream(req, t, t.plan)
            routed = await self.router.complete(req.body, ask, t.plan.chain)
        except NoRoute as exc:
            self._decided(t, uuid.uuid4().hex, refused=str(exc))
            raise Refused(exc.status, exc.kind, str(exc)) from None
        except KeyConflict as exc:
            raise Refused(409, "idempotency_key_conflict", str(exc)) from None
        except AllFailed as exc:
            why = self._decided(t, uuid.uuid4().hex, attempts=failed_attempts(exc),
                                refused="every model failed")
            raise Refused(502, "upstream_failed", f"{exc}; see GET /v1/models for circuit "
                          "states, or retry later", why) from None
        except UpstreamError as exc:  # the request itself was refused: the caller's to fix
            self._decided(t, uuid.uuid4().hex, refused=f"upstream rejected it: {exc}")
            raise Refused(exc.status or 400, "upstream_rejected", str(exc)) from None
        why = self._decided(t, routed.request_id, model=routed.model,
                            attempts=routed.attempts, depth=routed.depth)
        return Answer(routed.model, routed.depth, routed.request_id,
                      raw=attach(routed.raw, {**self._extra(t), "memoryd": why}))

    async def _plan(self, req: ChatRequest, t: _Trace, memories: int) -> Plan:
        """The route, after the user's approval when [approvals] asks for one."""
        gates = self.service.cfg.approvals
        plan = self.router.decide(req.body, t.ask, "hold" if gates.memory_remote else "refuse")
        t.plan = plan
        if not (req.irreversible or gates.tasks or gates.memory_remote or gates.max_cost_usd):
            return plan
        reasons = reasons_for(gates, req.task, req.irreversible, plan, memories)
        if reasons:
            plan = await self._approve(req, t, plan, reasons)
        return plan

    async def _stream(self, req: ChatRequest, t: _Trace, plan: Plan) -> Answer:
        started = await self.router.stream(req.body, t.ask, plan.chain)
        why = self._decided(t, started.request_id, model=started.model,
                            attempts=started.attempts, depth=started.depth)
        first = leading_chunk({**self._extra(t), "memoryd": why})
        return Answer(started.model, started.depth, started.request_id,
                      events=_after(first, started.events))

    async def _approve(self, req: ChatRequest, t: _Trace, plan: Plan,
                       reasons: list[dict[str, str]]) -> Plan:
        """File the request for approval and wait for the user. Return the plan to follow
        (memory may go remote once approved); raise Refused when the answer is no."""
        if any(r["reason"] == "memory_remote" for r in reasons):
            plan = self.router.decide(req.body, t.ask, "allow")  # where it goes on a yes
            t.plan = plan
        used = t.memory["used"] if t.memory else []
        what = {"preview": preview(req.body["messages"]), "model": t.ask.model,
                "irreversible": req.irreversible or False, "memory_ids": used,
                "est_cost_usd": round(plan.est_cost_usd, 6), "stream": req.stream}
        aid = self.approvals.file(task=t.ask.task, models=plan.chain, reasons=reasons,
                                  what=what, requested_by=req.requested_by,
                                  timeout_seconds=req.approval_timeout_seconds,
                                  key=req.idempotency_key, fingerprint=req.fingerprint)
        verdict = await self.approvals.wait(aid, req.disconnected)
        t.approval = {"id": aid, "decision": verdict.status, "by": verdict.by,
                      "reason": verdict.reason, "waited_seconds": verdict.waited_seconds,
                      "needed_because": reasons}
        if verdict.approved:
            self.approvals.answered(aid)  # one approval runs one request
            return plan
        # still pending: the daemon is stopping; the caller may re-send with its key
        kind = {"denied": "approval_denied", "timed_out": "approval_timed_out",
                "pending": "approval_interrupted"}.get(verdict.status, "approval_abandoned")
        message = verdict.refusal(aid)
        why = self._decided(t, uuid.uuid4().hex, refused=message)
        raise Refused(503 if kind == "approval_interrupted" else 403, kind, message, why)

    def _decided(self, t: _Trace, request_id: str, **outcome: Any) -> dict[str, Any]:
        """Explain the request's decision and record it in telemetry (off the request
        path); return the explanation."""
        why = explain(t.plan, t.ask, request_id=request_id, memory=t.memory,
                      approval=t.approval, **outcome)
        self.router.telemetry.record(Decision(time.time(), why["request_id"], why["task"],
                                              why["model"] or "", "api", why))
        return why

    @staticmethod
    def _extra(t: _Trace) -> dict[str, Any]:
        return {"memory": t.memory} if t.memory is not None else {}

    async def _memory_context(self, req: ChatRequest) -> tuple[list[str], int, list[Any]]:
        """The ids of the memories put in front of the prompt, their token estimate, and
        the messages with the context pack in front. Only memories of `req.owners` (the
        token's, daemon/owners.py) can enter the pack."""
        messages = req.body["messages"]
        query, budget, spec = _memory_spec(req.memory, messages)
        pack = await asyncio.to_thread(
            lambda: self.service.context(query, budget, device=spec.get("device"),
                                         user=spec.get("user"), owners=req.owners,
                                         **({} if req.raw else {"raw": False})))
        markdown = str(pack.get("markdown") or "")
        ids = [str(i["id"]) for i in pack.get("items") or [] if isinstance(i, dict) and "id" in i]
        if not markdown.strip():
            return [], 0, messages
        tokens = int(pack.get("tokens") or len(markdown) // 3)
        system = {"role": "system", "content": MEMORY_PREAMBLE + markdown}
        return ids, tokens, [system, *messages]


def _memory_spec(spec: Any, messages: list[Any]) -> tuple[str, int, dict[str, Any]]:
    """The query and token budget of a request's `memory` field (true, or an object)."""
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
    return query, budget, spec


def _last_user_text(messages: list[Any]) -> str:
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str):
            return str(m["content"])
    return ""


async def _after(first: bytes, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first  # memoryd's own chunk (no choices, as usage chunks), then the answer
    async for event in events:
        yield event
