"""Planning a routed request: which models may take it, in which order, and why the
others may not.

`decide` turns a request (its task, a named model or "auto", privacy, size and budget
limits) into a `Plan`: the chain of models to try and, for every candidate left out, the
reason (local-only, captured memory going remote, context window, cost). It is pure: no
model is called here; `daemon.routing.router.Router` walks the chain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from daemon.config import RouterConfig
from daemon.routing.registry import Registry

DEFAULT_MAX_TOKENS = 256


class NoRoute(ValueError):
    """No model may take this request (unknown model, privacy, size or budget)."""

    def __init__(self, message: str, status: int = 400, kind: str = "no_route") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


@dataclass(frozen=True)
class Ask:
    """How a request wants to be routed (everything but its payload)."""

    task: str = "default"
    model: str = "auto"
    local_only: bool = False
    memory_used: int = 0  # memories placed in the prompt: only local or allowed models
    max_cost_usd: float | None = None
    route: str = "api"


@dataclass(frozen=True)
class Plan:
    """Which models a request will try, in order, and why every other candidate will not
    be asked: one {"model", "reason", "detail"} per skipped model, where reason is
    local_only, memory_remote, context_window or max_cost."""

    chain: list[str]
    candidates: list[str]  # before the filters, in route order
    skipped: list[dict[str, str]]
    why: str  # how the candidates were chosen (named model, task route, skills)
    held: list[str] = field(default_factory=list)  # memory_remote skips a human may lift
    est_cost_usd: float = 0.0  # the highest estimated cost among the chain's models

    @property
    def needs_memory_approval(self) -> bool:
        """True when a held model would be tried before every model already kept."""
        return bool(self.held) and (not self.chain or self.candidates.index(self.held[0])
                                    < self.candidates.index(self.chain[0]))


def prompt_chars(body: dict[str, Any]) -> int:
    """The characters a request puts in the model's prompt: its messages' text and the
    tools it offers (their schemas are rendered into the prompt too)."""
    n = 0
    for m in body.get("messages") or ():
        c = m.get("content") if isinstance(m, dict) else None
        if isinstance(c, str):
            n += len(c)
        elif isinstance(c, list):
            n += sum(len(p.get("text") or "") for p in c if isinstance(p, dict))
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        n += len(json.dumps(tools, ensure_ascii=False))
    return n


def _candidates(reg: Registry, cfg: RouterConfig, ask: Ask) -> tuple[list[str], str]:
    """The models a request may go to, in order, and why that order; raise NoRoute
    when the request names a model that is not configured."""
    chain = reg.routes.get(ask.task) or reg.routes["default"]
    if ask.model and ask.model != "auto":
        if ask.model not in reg.chat:
            raise NoRoute(f"model {ask.model!r} is not configured; known models: "
                          f"{', '.join(sorted(reg.chat))} (or \"auto\")", 404,
                          "model_not_found")
        names = [ask.model, *(n for n in chain if n != ask.model)]
        why = f"the request named {ask.model}; the {ask.task!r} route follows as fallback"
    elif ask.task in cfg.routes or ask.task == "default":
        names = list(chain)
        why = f"the {ask.task!r} route, in its order"
    else:  # no chain configured for this task: models with the skill first, cheapest first
        skilled = sorted((n for n, b in reg.chat.items() if ask.task in b.profile.skills),
                         key=lambda n: reg.chat[n].profile.usd_per_mtok_in)
        names = [*skilled, *(n for n in chain if n not in skilled)]
        why = (f"task {ask.task!r} has no route: models with that skill first (cheapest "
               "first), then the default route" if skilled else
               f"task {ask.task!r} has no route and no model has that skill: the default "
               "route")
    return names, why


def decide(reg: Registry, cfg: RouterConfig, body: dict[str, Any], ask: Ask,
           memory_remote: str = "refuse") -> Plan:
    """Given a chat request, return its Plan: the models to try and, for every
    candidate left out, why (privacy, captured memory, context window, budget).

    `memory_remote` says what to do with a remote model the prompt's captured memory
    may not reach: "refuse" leaves it out, "hold" leaves it out but lists it in
    `Plan.held` (the request may go there once a human approves), "allow" keeps it
    (approved). Raise NoRoute as `plan` does; with "hold", not while a held model
    could still take the request."""
    names, why = _candidates(reg, cfg, ask)
    named = bool(ask.model) and ask.model != "auto"
    prompt_tokens = prompt_chars(body) // 3 + 8 * len(body.get("messages") or ())
    out_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens")
                     or DEFAULT_MAX_TOKENS)
    keep: list[str] = []
    skipped: list[dict[str, str]] = []
    held: list[str] = []
    top_cost = 0.0
    for n in names:
        p = reg.chat[n].profile
        cost = (prompt_tokens * p.usd_per_mtok_in + out_tokens * p.usd_per_mtok_out) / 1e6
        if p.privacy == "remote" and ask.local_only:
            skipped.append({"model": n, "reason": "local_only",
                            "detail": f"{n} is remote and the request is local-only"})
        elif (p.privacy == "remote" and ask.memory_used and n not in reg.memory_remote
              and memory_remote != "allow"):
            skipped.append({"model": n, "reason": "memory_remote", "detail": (
                f"{n} is remote and the prompt carries captured memory (allow it with "
                "router.memory_remote_models, or ask first with [approvals] "
                "memory_remote)")})
            if memory_remote == "hold":
                held.append(n)
        elif prompt_tokens + out_tokens > p.context_tokens:
            skipped.append({"model": n, "reason": "context_window", "detail": (
                f"{n}'s context ({p.context_tokens} tokens) is smaller than the request "
                f"(~{prompt_tokens} + {out_tokens} tokens)")})
        elif ask.max_cost_usd is not None and cost > ask.max_cost_usd:
            skipped.append({"model": n, "reason": "max_cost", "detail": (
                f"{n} may cost ${cost:.6f}, more than max_cost_usd={ask.max_cost_usd}")})
        else:
            keep.append(n)
            top_cost = max(top_cost, cost)
    plan = Plan(keep, names, skipped, why, held, top_cost)
    if plan.needs_memory_approval:
        return plan  # whether to ask a human is the caller's decision
    if not keep:
        raise NoRoute("no model can take this request: "
                      + "; ".join(s["detail"] for s in skipped))
    if named and ask.model not in keep:  # named, and may not take it
        detail = next(s["detail"] for s in skipped if s["model"] == ask.model)
        raise NoRoute(f"model {ask.model!r} cannot take this request: {detail}")
    return plan
