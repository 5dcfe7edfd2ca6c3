"""A context pack: the memories that matter most for a query, as markdown for an agent's
prompt, within a token budget.

Tokens are counted with a conservative estimate, not a tokenizer: one token per 3 bytes
of UTF-8. The agent's tokenizer is unknown (each model has its own); BPE tokenizers
average about 4 bytes per token on English prose and about 3 on code and paths, and a
CJK character is 3 bytes and about one token, so the estimate rarely undercounts and a
pack never overruns the budget it was given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any

from daemon.errors import InvalidRequest
from daemon.recall.hits import Hit

MIN_ITEM_TOKENS = 40  # a last item cut shorter than this is left out instead
HEADER_RESERVE = 8


def estimate_tokens(text: str) -> int:
    """A conservative token count for `text` (see the module docstring)."""
    return math.ceil(len(text.encode("utf-8")) / 3)


@dataclass(frozen=True)
class Pack:
    markdown: str
    tokens: int
    items: list[dict[str, Any]]


def _when(h: Hit) -> str:
    start = h.ts.astimezone(UTC)
    if h.ts_end and h.ts_end.astimezone(UTC) - start >= timedelta(minutes=1):
        end = h.ts_end.astimezone(UTC)
        tail = end.strftime("%H:%M") if end.date() == start.date() else end.strftime(
            "%Y-%m-%d %H:%M")
        return f"{start:%Y-%m-%d %H:%M}–{tail} UTC"
    return f"{start:%Y-%m-%d %H:%M} UTC"


def _sources(h: Hit) -> str:
    parts = [h.source]
    if h.project:
        parts.append(f"project {h.project}")
    if h.event_ids:
        parts.append(f"{len(h.event_ids)} events")
    if h.memory_ids:
        parts.append(f"{len(h.memory_ids)} memories")
    parts.append(f"id {h.id}")
    if h.user or h.device:  # who wrote it, on a store several people or devices share
        parts.append(f"by {h.user}@{h.device}")
    return ", ".join(parts)


def _section(h: Hit) -> tuple[str, str]:
    head = f"### {h.title or h.kind}\n_{_when(h)} · {h.kind} · sources: {_sources(h)}_\n"
    return head, h.text.strip()


def _fit_lines(text: str, room: int) -> str:
    """`text`'s lines while they fit in `room` tokens (a list is cut between items)."""
    kept: list[str] = []
    for line in text.split("\n"):
        if estimate_tokens("\n".join([*kept, line])) > room:
            break
        kept.append(line)
    return "\n".join(kept)


def build(query: str, digests: list[Hit], hits: list[Hit], budget_tokens: int,
          period: str = "", preface: str = "") -> Pack:
    """Given a query, the digests and the search hits for it (best first), return the pack.

    Digests come first (they say the most per token), then hits; each item carries its
    time and sources. Items are added while they fit; the first one that does not fit is
    cut to the remaining budget if enough remains, and the pack stops there.
    Raise ValueError if the budget cannot hold even the header.
    """
    title = f"## Memory for: {query.strip() or '(recent activity)'}"
    if period:
        title += f"\n_period: {period}_"
    used = estimate_tokens(title) + HEADER_RESERVE
    if used > budget_tokens:
        raise InvalidRequest(f"budget_tokens={budget_tokens} is too small for a context pack; "
                             f"give at least {used + MIN_ITEM_TOKENS}")
    parts = [title]
    if preface:  # the open tasks or decisions a question asks for: up to 70% of the budget
        preface = _fit_lines(preface, int((budget_tokens - used) * 0.7))
        if preface:
            parts.append(preface)
            used += estimate_tokens(f"\n{preface}\n")
    items: list[dict[str, Any]] = []
    seen: set[str] = set()
    for h in [*digests, *hits]:
        if h.id in seen:
            continue
        seen.add(h.id)
        head, body = _section(h)
        cost = estimate_tokens(f"\n{head}{body}\n")
        left = budget_tokens - used
        if cost > left:
            room = left - estimate_tokens(f"\n{head}\n…") - 1
            if room < MIN_ITEM_TOKENS:
                break
            body = _cut(body, room) + "…"
            cost = estimate_tokens(f"\n{head}{body}\n")
            if cost > left:
                break
            parts.append(f"{head}{body}")
            used += cost
            items.append(_item(h, cut=True))
            break
        parts.append(f"{head}{body}")
        used += cost
        items.append(_item(h, cut=False))
    if not items and not preface:
        parts.append("_no memories match_")
    markdown = "\n\n".join(parts) + "\n"
    return Pack(markdown=markdown, tokens=estimate_tokens(markdown), items=items)


def _cut(text: str, tokens: int) -> str:
    raw = text.encode("utf-8")[: max(tokens, 0) * 3]
    return raw.decode("utf-8", errors="ignore").rstrip()


def _item(h: Hit, cut: bool) -> dict[str, Any]:
    return {"id": h.id, "kind": h.kind, "source": h.source,
            "ts": h.ts.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "ts_end": (h.ts_end.astimezone(UTC).isoformat().replace("+00:00", "Z")
                       if h.ts_end else None), "title": h.title, "truncated": cut,
            "covers": [c.id for c in h.covers], "device": h.device, "user": h.user}
