"""Open tasks and decisions, listed when a question asks for them.

"What is still open?" shares no words with the tasks themselves, so a search cannot find
them; but every chunk memory carries the open tasks and decisions its events state
(checked against them when it was written). A context pack for such a question leads with
that list: the newest first, each once, with its day and project, as far as the budget
allows (`daemon.recall.context.build` fits it).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from daemon.owners import EVERYONE, Owners
from daemon.store.lance import Store

_OPEN = re.compile(r"\b(?:open|to ?do|todos|left|pending|unfinished|outstanding|remaining|"
                   r"tasks?|follow[- ]ups?|backlog)\b", re.IGNORECASE)
_DECIDED = re.compile(r"\b(?:decid\w*|decisions?|chose|chosen|settled|agreed)\b", re.IGNORECASE)
MAX_ITEMS = 40


def asks_for(query: str) -> list[str]:
    """The memory columns a question asks for: `open_tasks`, `decisions`, both or none."""
    out = []
    if _OPEN.search(query):
        out.append("open_tasks")
    if _DECIDED.search(query):
        out.append("decisions")
    return out


def _items(store: Store, column: str, owners: Owners, since: datetime | None,
           until: datetime | None) -> list[tuple[str, datetime, str]]:
    where = ["level = 'chunk'", f"array_length({column}) > 0"]
    if since:
        where.append(f"ts >= timestamp '{since.astimezone(UTC):%Y-%m-%d %H:%M:%S}'")
    if until:
        where.append(f"ts < timestamp '{until.astimezone(UTC):%Y-%m-%d %H:%M:%S}'")
    if owners.where():
        where.append(f"({owners.where()})")
    rows = store.memory_rows(" AND ".join(where), ["id", "ts", "project", column])
    rows.sort(key=lambda r: r["ts"], reverse=True)
    out: list[tuple[str, datetime, str]] = []
    seen: set[str] = set()
    for r in rows:
        for item in r.get(column) or []:
            key = " ".join(item.lower().split())
            if key and key not in seen:
                seen.add(key)
                out.append((item, r["ts"], r.get("project") or ""))
    return out[:MAX_ITEMS]


def section(store: Store, query: str, owners: Owners = EVERYONE,
            since: datetime | None = None, until: datetime | None = None) -> str:
    """The markdown list of what `query` asks for ("" when it asks for neither)."""
    parts: list[str] = []
    for column in asks_for(query):
        items = _items(store, column, owners, since, until)
        if not items:
            continue
        label = "Open tasks" if column == "open_tasks" else "Decisions"
        lines = [f"- {text} _({ts.astimezone(UTC):%Y-%m-%d}{', ' + p if p else ''})_"
                 for text, ts, p in items]
        parts.append(f"### {label} (stated in your files and notes)\n" + "\n".join(lines))
    return "\n\n".join(parts)

