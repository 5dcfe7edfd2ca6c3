"""Explained routing: why a completion went where it went, in a form a person reads.

Given a request's Plan (candidates, the chain kept, every skipped model and why), the
attempt trail of the call (circuits found open, models that failed) and what memory
went into the prompt, `explain` returns the `memoryd` object that every routed answer
carries: in the JSON of a plain answer, in a leading chunk of a streamed one, and in
telemetry's `decisions` table (the status page shows the newest).

Reasons a candidate was not asked: local_only, memory_remote, context_window, max_cost
(from the plan), circuit_open (at call time); a model that was asked and failed is in
`failed` with its error class.
"""

from __future__ import annotations

import json
import time
from typing import Any

from daemon.routing.router import AllFailed, Ask, Plan

CIRCUIT_DETAIL = "{m}'s circuit is open after recent failures; it is tried again later"


def explain(plan: Plan | None, ask: Ask, *, request_id: str, model: str = "",
            attempts: list[dict[str, str]] | None = None, depth: int = 0,
            memory: dict[str, Any] | None = None, approval: dict[str, Any] | None = None,
            refused: str = "") -> dict[str, Any]:
    """Given how a request was planned and what happened, return its explanation."""
    attempts = attempts or []
    skipped = list(plan.skipped) if plan is not None else []
    seen = {s["model"] for s in skipped}
    for a in attempts:
        if a["outcome"] == "skipped" and a["model"] not in seen:
            seen.add(a["model"])
            skipped.append({"model": a["model"], "reason": a["error"] or "circuit_open",
                            "detail": CIRCUIT_DETAIL.format(m=a["model"])})
    failed = [{"model": a["model"], "error": a["error"]} for a in attempts
              if a["outcome"] == "error"]
    out: dict[str, Any] = {
        "request_id": request_id, "model": model or None, "task": ask.task,
        "why": _sentence(plan, model, skipped, failed, refused),
        "candidates": list(plan.candidates) if plan is not None else [],
        "chain": list(plan.chain) if plan is not None else [],
        "skipped": skipped, "failed": failed, "fallback_depth": depth,
        "memory": memory if memory is not None else {"used": [], "tokens": 0}}
    if ask.local_only:
        out["local_only"] = True
    if ask.max_cost_usd is not None:
        out["max_cost_usd"] = ask.max_cost_usd
    if approval is not None:
        out["approval"] = approval
    if refused:
        out["refused"] = refused
    return out


def _sentence(plan: Plan | None, model: str, skipped: list[dict[str, str]],
              failed: list[dict[str, str]], refused: str) -> str:
    parts = [f"candidates from {plan.why}: {', '.join(plan.candidates)}"] if plan else []
    if skipped:
        parts.append("skipped " + ", ".join(f"{s['model']} ({s['reason']})" for s in skipped))
    if failed:
        parts.append("failed " + ", ".join(f"{f['model']} ({f['error']})" for f in failed))
    if model:
        parts.append(f"{model} answered" + (" as the first choice"
                                            if not skipped and not failed else ""))
    elif refused:
        parts.append(f"refused: {refused}")
    return "; ".join(parts)


def failed_attempts(exc: AllFailed) -> list[dict[str, str]]:
    """The trail of a request whose every model failed."""
    return [{"model": m, "outcome": "error", "error": e.kind} for m, e in exc.errors]


def attach(raw: bytes, fields: dict[str, Any]) -> bytes:
    """Given an upstream's JSON answer (bytes) and memoryd's fields, return the answer
    with the fields added at the top level, touching the upstream's bytes as little as
    possible (they are not parsed and written again when they end like an object)."""
    end = raw.rstrip()
    if end.endswith(b"}") and end.lstrip().startswith(b"{") and not any(
            f'"{k}"'.encode() in raw for k in fields):
        head = end[:-1].rstrip()
        extra = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()[1:-1]
        return head + (b"" if head.endswith(b"{") else b",") + extra + b"}"
    data = json.loads(raw)
    data.update(fields)
    return json.dumps(data, ensure_ascii=False).encode()


def leading_chunk(fields: dict[str, Any]) -> bytes:
    """The first SSE event of a streamed answer: no choices (as usage chunks), memoryd's
    fields only, so the openai client passes it on as a chunk with extra fields."""
    event = {"id": "memoryd", "object": "chat.completion.chunk", "created": int(time.time()),
             "model": "memoryd", "choices": [], **fields}
    return b"data: " + json.dumps(event, ensure_ascii=False).encode() + b"\n\n"
