"""One request's walk along its chain of models, shared by `Router.complete` and
`Router.stream`: passes with backoff, circuit skips, the bookkeeping of each failure
(telemetry, breaker, error list) and the attempt trail the caller gets back."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from daemon.routing.breaker import Breaker
from daemon.routing.planning import Ask, NoRoute
from daemon.routing.toolcalls import Fault
from daemon.routing.toolcalls import request_error as tool_request_error
from models.errors import UpstreamError

if TYPE_CHECKING:
    from daemon.routing.router import Router

log = logging.getLogger(__name__)


class AllFailed(Exception):
    """Every model in the chain failed; `errors` says how, model by model."""

    def __init__(self, errors: list[tuple[str, UpstreamError]]) -> None:
        detail = "; ".join(f"{m}: {e.kind} ({e})" for m, e in errors) or (
            "every model's circuit is open after recent failures; memoryd tries them again "
            "once router.breaker_reset_seconds have passed")
        super().__init__(f"every model for this request failed: {detail}")
        self.errors = errors


class Trail:
    """One request's walk along its chain, shared by `complete` and `stream`: passes with
    backoff, circuit skips, failure bookkeeping (telemetry, breaker, error list) and the
    attempt trail the caller gets back."""

    def __init__(self, router: Router, names: list[str], ask: Ask, tools: bool) -> None:
        self.router = router
        self.names = names
        self.ask = ask
        self.tools = int(tools)  # the request offers tools: its calls are checked
        self.rid = uuid.uuid4().hex
        self.errors: list[tuple[str, UpstreamError]] = []
        self.attempts: list[dict[str, str]] = []
        self.depth = 0
        self._pass, self._i = 0, 0

    async def next(self) -> tuple[str, Any, Any, Breaker] | None:
        """The next model to try (name, backend, profile, breaker), or None at the end."""
        rt = self.router
        while True:
            if self._i >= len(self.names):
                self._pass += 1
                self._i = 0
                if self._pass > rt.cfg.retries or not self.names:
                    return None
                await rt._backoff(self._pass)
            name = self.names[self._i]
            self._i += 1
            backend = rt.reg.chat[name]
            breaker = rt.breakers[name]
            if breaker.allow():
                return name, backend, backend.profile, breaker
            rt._record(self.rid, self.ask, name, backend.profile, 0.0, "skipped",
                       "circuit_open", self.depth, tools=self.tools)
            self.attempts.append({"model": name, "outcome": "skipped", "error": "circuit_open"})

    def failed(self, name: str, started: float, exc: BaseException) -> None:
        """Book a failed call; re-raise it when no other model would do better (a 4xx)."""
        rt = self.router
        profile = rt.reg.chat[name].profile
        if isinstance(exc, UpstreamError):
            err = exc
        elif isinstance(exc, TimeoutError):
            err = UpstreamError("timeout", f"{name} took longer than "
                                f"{profile.timeout_seconds:g} s")
        else:  # StopAsyncIteration: a stream that ended before its first event
            err = UpstreamError("truncated", f"{name} sent no first chunk")
        rt._record(self.rid, self.ask, name, profile, started, "error", err.kind, self.depth,
                   tools=self.tools)
        self.attempts.append({"model": name, "outcome": "error", "error": err.kind})
        breaker = rt.breakers[name]
        if not err.retryable and self.tools and err.kind == "bad_request":
            # A backend that refuses tools (not every server takes them) is no reason to
            # fail the request: the next model may take them. Its circuit stays as it was.
            breaker.release()
            self.errors.append((name, err))
            self.depth += 1
            return
        if not err.retryable:
            breaker.release()
            raise err from None
        breaker.failure(err.retry_after if err.kind == "rate_limited" else None)
        self.errors.append((name, err))
        self.depth += 1

    def bad_tools(self, name: str, started: float, fault: Fault, tokens_in: int,
                  tokens_out: int) -> None:
        """Book an answer whose tool calls the caller could not use. The backend itself
        works (its circuit stays closed); the fault is the model's, per model in
        telemetry, and the next model in the chain gets the request."""
        rt = self.router
        profile = rt.reg.chat[name].profile
        rt._record(self.rid, self.ask, name, profile, started, "error", fault.error_class,
                   self.depth, tokens_in, tokens_out, tools=self.tools)
        self.attempts.append({"model": name, "outcome": "error", "error": fault.error_class})
        self.errors.append((name, UpstreamError(fault.error_class, fault.detail)))
        log.info("model %s answered with a broken tool call (%s); trying the next model",
                 name, fault.detail)
        self.depth += 1

    def answered(self, name: str, started: float, tokens_in: int, tokens_out: int) -> None:
        rt = self.router
        rt._record(self.rid, self.ask, name, rt.reg.chat[name].profile, started, "ok", "",
                   self.depth, tokens_in, tokens_out, tools=self.tools)
        self.attempts.append({"model": name, "outcome": "ok", "error": ""})

    def all_failed(self) -> AllFailed:
        return AllFailed(self.errors)


def check_tools_request(body: dict[str, Any]) -> None:
    """Raise NoRoute (a 400) when the request's `tools` are malformed."""
    problem = tool_request_error(body)
    if problem is not None:
        raise NoRoute(problem, 400, "invalid_request")


