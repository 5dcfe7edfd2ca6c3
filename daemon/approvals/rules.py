"""Why a routed request needs a human, what the human reads about it, and what makes a
request the same request again (the fingerprint an idempotency key is bound to)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from daemon.config import ApprovalsConfig
from daemon.intake.redact import redact

PREVIEW_CHARS = 300


def reasons_for(cfg: ApprovalsConfig, task: str, irreversible: str | bool,
                plan: Any, memory_count: int) -> list[dict[str, str]]:
    """Given the config, the request's task, its `irreversible` mark (False, True or a
    description of the step) and its routing Plan, return why it needs approval: one
    {"reason", "detail"} per rule that applies (empty: it goes ahead)."""
    out = []
    if task in cfg.tasks:
        out.append({"reason": "task",
                    "detail": f"task {task!r} needs approval ([approvals] tasks)"})
    if irreversible and cfg.irreversible:
        # the caller's own words: stored, shown and logged, so redacted like any event
        what = f": {redact(irreversible)}" if isinstance(irreversible, str) else ""
        out.append({"reason": "irreversible",
                    "detail": f"the caller marked this step irreversible{what}"})
    if cfg.memory_remote and plan.needs_memory_approval:
        out.append({"reason": "memory_remote", "detail": (
            f"{memory_count} captured memories would go to the remote model "
            f"{plan.held[0]} (not in router.memory_remote_models)")})
    if cfg.max_cost_usd > 0 and plan.est_cost_usd > cfg.max_cost_usd:
        out.append({"reason": "cost", "detail": (
            f"estimated cost up to ${plan.est_cost_usd:.6f}, above [approvals] "
            f"max_cost_usd = {cfg.max_cost_usd}")})
    return out


def fingerprint(request: dict[str, Any]) -> str:
    """A stable hash of everything that makes a request this request (the caller's
    token, task, model, messages, parameters): a reused key must bring the same one."""
    text = json.dumps(request, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def preview(messages: list[Any]) -> str:
    """The last user message, secrets redacted, cut for a human to read."""
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            c = m.get("content")
            text = c if isinstance(c, str) else " ".join(
                str(p.get("text") or "") for p in c or () if isinstance(p, dict))
            text = " ".join(redact(text).split())
            return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "…"
    return ""
