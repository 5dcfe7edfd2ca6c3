"""Turn an activity chunk into a prompt, and the model's answer into a memory row."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from daemon.chunking import Chunk

SYSTEM = ("You write short, factual notes about what a person did on their computer. "
          "Never invent anything that is not in the log.")
MAX_PROMPT_CHARS = 5000  # ~1,400 tokens: prompt evaluation dominates a summary's cost
PER_EVENT_CHARS = 160


def _line(ev: Any) -> str:
    what = ev.subject if ev.source == "files" else (ev.title or ev.subject)
    snippet = " ".join(ev.text.split())[:PER_EVENT_CHARS]
    when = ev.ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    return f"- {when} {ev.kind} {what}" + (f" :: {snippet}" if snippet else "")


def prompt(chunk: Chunk) -> list[dict[str, str]]:
    lines: list[str] = []
    used = 0
    for ev in chunk.events:
        line = _line(ev)
        if used + len(line) > MAX_PROMPT_CHARS:
            lines.append(f"- … and {len(chunk.events) - len(lines)} more events")
            break
        lines.append(line)
        used += len(line) + 1
    log = "\n".join(lines)
    user = (f"Activity log:\n{log}\n\n"
            "In two or three sentences, say what the person was working on. Name the main "
            "files, projects, pages or commands.")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def title(chunk: Chunk) -> str:
    start = chunk.start.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    end = chunk.end.astimezone(UTC).strftime("%H:%M")
    subjects = []
    for ev in chunk.events:
        name = ev.subject.rsplit("/", 1)[-1] if ev.source == "files" else (ev.title or ev.subject)
        if name and name not in subjects:
            subjects.append(name)
    more = f" +{len(subjects) - 3} more" if len(subjects) > 3 else ""
    return f"{chunk.source} {start}–{end}: {', '.join(subjects[:3])}{more}"


def memory_row(chunk: Chunk, summary: str, model: str, vector: list[float]) -> dict[str, Any]:
    subjects = "\n".join(sorted({ev.subject for ev in chunk.events}))
    t = title(chunk)
    return {
        "id": chunk.id, "ts": chunk.start, "ts_end": chunk.end, "level": "chunk",
        "source": chunk.source, "title": t, "text": summary,
        "event_ids": [ev.id for ev in chunk.events], "model": model,
        "created": datetime.now(UTC), "doc": f"{t}\n{summary}\n{subjects}", "vector": vector,
    }
