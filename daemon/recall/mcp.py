"""MCP: memory search, recent activity, digest and context as tools for agents.

One set of tools over a small `MemoryTools` seam, served two ways:
- streamable HTTP at /mcp on the daemon (behind the token; the caller needs the
  memory:raw scope, since recent activity is raw events), calling the service in-process;
- `memoryd mcp` on stdio, for agents that launch their tools, calling the running
  daemon's REST API over its Unix socket.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from typing import Any, Protocol

import anyio

from daemon.owners import Owners

log = logging.getLogger(__name__)
# Whose memories the current /mcp request's token reads (daemon/owners.py): set by the
# endpoint after its token check, read by the tools (the SDK runs them in tasks and
# threads that inherit the request's context).
# Fail closed: a tool run outside a checked request reads nobody's memory.
NOBODY = Owners(devices=(), users=())
CALLER_OWNERS: ContextVar[Owners] = ContextVar("memoryd_mcp_owners", default=NOBODY)


class MemoryTools(Protocol):
    def memory(self) -> dict[str, Any]: ...  # /v1/status's `memory` block

    def search(self, query: str, k: int, device: str | None = None,
               user: str | None = None) -> list[dict[str, Any]]: ...

    def recent(self, limit: int, source: str | None) -> list[dict[str, Any]]: ...

    def digest(self, period: str, date: str | None) -> dict[str, Any]: ...

    def context(self, query: str, budget_tokens: int, device: str | None = None,
                user: str | None = None) -> dict[str, Any]: ...


class ServiceTools:
    """The tools over the MemoryService (inside the daemon)."""

    def __init__(self, service: Any) -> None:
        self.service = service

    def memory(self) -> dict[str, Any]:
        return dict(self.service.status()["memory"])

    def search(self, query: str, k: int, device: str | None = None,
               user: str | None = None) -> list[dict[str, Any]]:
        from daemon.service import hit_json

        return [hit_json(h) for h in self.service.search(
            query, k, device=device, user=user, owners=CALLER_OWNERS.get())]

    def recent(self, limit: int, source: str | None) -> list[dict[str, Any]]:
        return list(self.service.recent(limit, source, owners=CALLER_OWNERS.get()))

    def digest(self, period: str, date: str | None) -> dict[str, Any]:
        from datetime import date as date_type

        day = date_type.fromisoformat(date) if date else None
        return dict(self.service.digest(period, day, owners=CALLER_OWNERS.get()))

    def context(self, query: str, budget_tokens: int, device: str | None = None,
                user: str | None = None) -> dict[str, Any]:
        return dict(self.service.context(query, budget_tokens, device=device, user=user,
                                         owners=CALLER_OWNERS.get()))


class DaemonTools:
    """The tools over a running daemon's REST API (for `memoryd mcp` on stdio)."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        from daemon.cli.client import daemon_get

        return daemon_get(self.cfg, path, {k: v for k, v in params.items() if v is not None})

    def memory(self) -> dict[str, Any]:
        return dict(self._get("/v1/status", {})["memory"])

    def search(self, query: str, k: int, device: str | None = None,
               user: str | None = None) -> list[dict[str, Any]]:
        return list(self._get("/v1/memory/search", {"q": query, "k": k, "device": device,
                                                     "user": user})["results"])

    def recent(self, limit: int, source: str | None) -> list[dict[str, Any]]:
        return list(self._get("/v1/memory/recent", {"limit": limit, "source": source})["results"])

    def digest(self, period: str, date: str | None) -> dict[str, Any]:
        return dict(self._get("/v1/memory/digest", {"period": period, "date": date}))

    def context(self, query: str, budget_tokens: int, device: str | None = None,
                user: str | None = None) -> dict[str, Any]:
        return dict(self._get("/v1/memory/context",
                              {"query": query, "budget_tokens": budget_tokens,
                               "device": device, "user": user}))


def build_server(tools: MemoryTools) -> Any:
    """An MCPServer exposing the four memory tools over `tools`."""
    from mcp.server.mcpserver import MCPServer

    mcp = MCPServer("memoryd", instructions=(
        "memoryd remembers what the user did on this computer (files, browser, shell). "
        "Use memory_context for a ready prompt pack, memory_search to find specific "
        "things, recent_activity for the latest raw events, digest for a day or week."))

    async def run(fn: Any, *args: Any) -> Any:
        from mcp.server.mcpserver.exceptions import ToolError

        try:
            out = await anyio.to_thread.run_sync(fn, *args)
        except (ValueError, LookupError) as exc:
            raise ToolError(str(exc)) from None
        except Exception as exc:  # memory broken: the agent reads why, not a bare error
            note = await anyio.to_thread.run_sync(status_note, tools)
            if not note:
                raise
            raise ToolError(f"{type(exc).__name__}: {exc}\n{note}") from exc
        return await noted(json.dumps(out, ensure_ascii=False, default=str))

    async def noted(text: str) -> Any:
        """The answer, then (only when memory is unavailable or degraded) a second text
        block saying so: an agent is not told "nothing found" when memory is broken."""
        note = await anyio.to_thread.run_sync(status_note, tools)
        return [text, note] if note else text

    @mcp.tool(description="Search the user's captured memory (hybrid full-text and "
                          "semantic). Returns JSON results with id, ts, title, text, score, "
                          "device and user. `device` and `user` (comma-separated names) "
                          "keep only what those devices or people wrote.")
    async def memory_search(query: str, k: int = 10, device: str | None = None,
                            user: str | None = None) -> Any:
        return await run(tools.search, query, k, device, user)

    @mcp.tool(description="The newest raw activity events (optionally of one source: "
                          "files, browser, shell), newest first, as JSON.")
    async def recent_activity(limit: int = 20, source: str | None = None) -> Any:
        return await run(tools.recent, limit, source)

    @mcp.tool(description="The day or week digest holding a date (YYYY-MM-DD, default "
                          "today), as JSON.")
    async def digest(period: str = "day", date: str | None = None) -> Any:
        return await run(tools.digest, period, date)

    @mcp.tool(description="A markdown context pack about `query` within a token budget, "
                          "ready to paste into a prompt.")
    async def memory_context(query: str, budget_tokens: int = 1500, device: str | None = None,
                             user: str | None = None) -> Any:
        out = await anyio.to_thread.run_sync(tools.context, query, budget_tokens, device, user)
        return await noted(str(out.get("markdown") or ""))

    @mcp.tool(description="Whether memory is available, and every reason it is "
                          "unavailable or degraded (code, message, since), as JSON.")
    async def memory_status() -> str:
        return json.dumps(await anyio.to_thread.run_sync(tools.memory))

    return mcp


def status_note(tools: MemoryTools) -> str:
    """'memoryd status: ...' when memory is unavailable or degraded, else ''."""
    from daemon.health import verdict

    try:
        memory = tools.memory()
    except Exception as exc:  # the answer itself came back: say the status did not
        return f"memoryd status: unknown ({exc})"
    said = verdict(memory)
    return "" if said == "working" else f"memoryd status: memory is {said}"


class MCPEndpoint:
    """The ASGI app behind /mcp: checks the token, then hands over to the MCP SDK's
    streamable-HTTP session manager. The SDK (~25 MB) is imported and the manager started
    on first use: an idle daemon stays small, and its uvicorn runs without lifespan events."""

    def __init__(self, service: Any, check: Any) -> None:
        self._service = service
        self._check = check
        self._app: Any = None
        self._started: anyio.Event | None = None
        self._task: Any = None

    async def _ensure_started(self) -> None:
        if self._started is not None:
            await self._started.wait()
            return
        import asyncio

        from mcp.server.transport_security import TransportSecuritySettings

        ready = self._started = anyio.Event()
        server = build_server(ServiceTools(self._service))
        # The daemon's own middleware already refuses foreign Host headers.
        self._app = server.streamable_http_app(
            streamable_http_path="/mcp", stateless_http=True, json_response=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
        manager = server.session_manager

        async def hold() -> None:
            async with manager.run():
                ready.set()
                await anyio.sleep_forever()

        self._task = asyncio.get_running_loop().create_task(hold())
        await ready.wait()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        from starlette.requests import Request

        from daemon.api.envelope import error_json

        request = Request(scope, receive)
        try:
            await self._check(request)
        except Exception as exc:  # the API's 401/403, answered here (no FastAPI handler)
            forbidden = type(exc).__name__ == "_Forbidden"
            msg = (f"this token lacks the {exc} scope" if forbidden
                   else "missing or wrong bearer token")
            await error_json(403 if forbidden else 401,
                             "forbidden" if forbidden else "unauthorized", msg)(scope, receive,
                                                                                send)
            return
        from daemon.owners import request_owners

        await self._ensure_started()
        reset = CALLER_OWNERS.set(request_owners(request))
        try:
            await self._app(scope, receive, send)
        finally:
            CALLER_OWNERS.reset(reset)


def router(service: Any, require: Any) -> Any:
    """The /mcp route (a feature router, see daemon/api.py)."""
    from fastapi import APIRouter
    from starlette.routing import Route

    r = APIRouter()
    r.routes.append(Route("/mcp", endpoint=MCPEndpoint(service, require("memory:raw").dependency),
                          methods=["GET", "POST", "DELETE"], include_in_schema=False))
    return r
