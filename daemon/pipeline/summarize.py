"""Turn an activity chunk into a prompt, the model's JSON answer into a faithful memory.

The model answers under a JSON schema (llama.cpp turns it into a grammar): summary,
entities, decisions, open tasks. Identifiers and dates are not asked of the model: they
are taken from the events themselves (`daemon.pipeline.identifiers`), exactly, which a small model
does not do, and leaving them out of its answer saves a third of its tokens, so the
decisions and open tasks fit in the budget. What the model names is checked against the
events: entities (and any identifiers or dates it offers anyway) that the events do not
contain are dropped (a small model invents). An empty or unparseable answer never
makes an empty memory: `fallback_summary` writes one from the events themselves.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from daemon.pipeline import identifiers as idf
from daemon.pipeline.chunking import Chunk

SYSTEM = ("You write short, factual notes about what a person did on their computer. "
          "Never invent anything that is not in the log. Answer in JSON.")
MAX_PROMPT_CHARS = 5000  # ~1,400 tokens: prompt evaluation dominates a summary's cost
PER_EVENT_CHARS = 160
SUBJECT_CHARS = 300  # a path, URL or command; a pushed event's may be 4 KB


def prompt_cost(text: str) -> int:
    """`text`'s share of MAX_PROMPT_CHARS: its characters, with each byte of UTF-8 past
    the first counting twice more. ASCII costs what it did; CJK, emoji or random
    Unicode (several tokens a character) costs up to 7x, so the prompt stays inside the
    model's context whatever the events hold."""
    return len(text) + 2 * (len(text.encode("utf-8", "replace")) - len(text))
FALLBACK_MODEL = "deterministic"  # the `model` of a memory no model wrote
LIST_MAX = 12  # items kept per structured list of a chunk memory
SUMMARY_CHARS = 480  # two or three sentences


def answer_tokens(events: int, cap: int) -> int:
    """The token budget of a chunk's answer: small chunks need less (up to `cap`)."""
    return min(cap, 64 + 16 * events)


def _dedupe_sentences(text: str) -> str:
    """The text without sentences it already said (a small model repeats itself)."""
    seen: set[str] = set()
    out = []
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        key = " ".join(sentence.lower().split())
        if key and key not in seen:
            seen.add(key)
            out.append(sentence)
    return " ".join(out)


def _list(max_items: int, max_chars: int) -> dict[str, Any]:
    return {"type": "array", "maxItems": max_items,
            "items": {"type": "string", "maxLength": max_chars}}


# Key order is generation order: the summary comes first, so an answer cut off by
# max_tokens still carries it (`parse` recovers it from the unfinished JSON).
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        # Lengths bound the answer in the grammar itself: the 0.5B model otherwise loops,
        # repeating its summary sentence until max_tokens (seen on the eval week: most
        # one-event chunks used all 160 tokens).
        "summary": {"type": "string", "maxLength": SUMMARY_CHARS},
        "entities": _list(4, 60),
        "decisions": _list(2, 160),
        "open_tasks": _list(2, 160),
    },
    "required": ["summary", "entities", "decisions", "open_tasks"],
}
RESPONSE_FORMAT = {"type": "json_object", "schema": SCHEMA}


@dataclass
class Fields:
    """A memory's text and structured fields, as stored."""

    summary: str
    identifiers: list[str] = field(default_factory=list)
    entities: list[str] = field(default_factory=list)
    dates: list[str] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    open_tasks: list[str] = field(default_factory=list)
    fallback: bool = False  # the model's answer was empty or unusable
    model_text: str = ""  # what the model wrote, before anything was put back

    def text(self) -> str:
        """The memory's text: the summary, decisions, open tasks, and every identifier
        the prose does not already name, so full-text search finds them all."""
        parts = [self.summary.strip()]
        if self.decisions:
            parts.append("Decisions: " + "; ".join(self.decisions))
        if self.open_tasks:
            parts.append("Open tasks: " + "; ".join(self.open_tasks))
        lost = idf.missing(self.identifiers, "\n".join(parts))
        # `tests/x.py` already carries `x.py`: list only what no other lost item contains
        lost = [i for i in lost if not any(i != j and i.lower() in j.lower() for j in lost)]
        if lost:
            parts.append("Identifiers: " + ", ".join(lost))
        return "\n".join(parts)

    def columns(self) -> dict[str, list[str]]:
        return {"identifiers": self.identifiers, "entities": self.entities,
                "dates": self.dates, "decisions": self.decisions,
                "open_tasks": self.open_tasks}


def _line(ev: Any) -> str:
    what = (ev.subject if ev.source in ("files", "browser") else (ev.title or ev.subject))
    what = what[:SUBJECT_CHARS]
    extra = ev.title if ev.source == "browser" else " ".join(ev.text.split())
    snippet = extra[:PER_EVENT_CHARS] if extra != what else ""
    when = ev.ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    return f"- {when} {ev.kind} {what}" + (f" :: {snippet}" if snippet else "")


def prompt(chunk: Chunk) -> list[dict[str, str]]:
    lines: list[str] = []
    used = 0
    for ev in chunk.events:
        line = _line(ev)
        if used + prompt_cost(line) > MAX_PROMPT_CHARS:
            lines.append(f"- … and {len(chunk.events) - len(lines)} more events")
            break
        lines.append(line)
        used += prompt_cost(line) + 1
    log = "\n".join(lines)
    project = f" (project: {chunk.project})" if chunk.project else ""
    user = (f"Activity log{project}:\n{log}\n\n"
            "Answer with a JSON object. summary: two or three sentences on what the person "
            "was working on, naming the exact files, pages, commands, tickets and branches. "
            "entities: projects, people, tools. decisions: what was decided. "
            "open_tasks: what is left to do. Use [] when none.")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


_SUMMARY = re.compile(r'"summary"\s*:\s*"((?:[^"\\]|\\.)*)')


def parse(text: str) -> dict[str, Any]:
    """Given the model's answer, return its fields; {} when there is nothing usable.
    An answer cut off by the token limit keeps its summary when that much was written."""
    text = (text or "").strip()
    if not text:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        m = _SUMMARY.search(text)
        if not m:
            return {}
        try:
            summary = json.loads(f'"{m.group(1)}"')
        except json.JSONDecodeError:
            summary = m.group(1)
        return {"summary": summary}
    return data if isinstance(data, dict) else {}


def strings(value: Any, limit: int = LIST_MAX, max_chars: int = 240) -> list[str]:
    if not isinstance(value, list):
        return []
    out = [" ".join(v.split())[:max_chars] for v in value if isinstance(v, str) and v.strip()]
    return idf.merge(out, limit=limit)


def usable(summary: str) -> bool:
    """A summary worth keeping: some words, not an echo of the instructions or JSON."""
    words = re.findall(r"[A-Za-z]{2,}", summary)
    return len(words) >= 3 and not summary.lstrip().startswith(("{", "["))


def _name(ev: Any) -> str:
    if ev.source == "files":
        return ev.subject.rsplit("/", 1)[-1]
    if ev.source == "shell":
        return idf.command_identifier(ev.subject) or ev.subject[:60]
    return ev.title or ev.subject


def fallback_summary(chunk: Chunk) -> str:
    """A summary written from the events alone, for when the model gives nothing."""
    verbs = {"files": "Worked on", "browser": "Visited", "shell": "Ran"}
    kinds = Counter(ev.kind for ev in chunk.events)
    names = idf.merge(_name(ev) for ev in chunk.events)
    start = chunk.start.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    end = chunk.end.astimezone(UTC).strftime("%H:%M")
    where = f" in {chunk.project}" if chunk.project else ""
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    what = ", ".join(f"{n} {k}" for k, n in kinds.most_common())
    return (f"{verbs.get(chunk.source, 'Activity:')} {shown}{where} "
            f"({what}, {start}–{end} UTC).")


def _whole_sentences(text: str) -> str:
    """An answer cut off by its token budget, back to its last whole sentence (if any)."""
    if not text or text[-1] in ".!?)\"'`":
        return text
    end = max(text.rfind(". "), text.rfind("! "), text.rfind("? "))
    return text[:end + 1] if end > 0 else text


def _new_items(items: list[str], summary: str) -> list[str]:
    """Items that say something new: not the summary again, not each other again."""
    said = " ".join(summary.lower().split())
    out: list[str] = []
    for item in items:
        key = " ".join(item.lower().split())
        if key and key not in said and key not in (o.lower() for o in out):
            out.append(item)
    return out


def chunk_fields(chunk: Chunk, answer: str) -> Fields:
    """Given a chunk and the model's raw answer, return the checked and completed fields."""
    data = parse(answer)
    source_text = "\n".join(f"{ev.subject}\n{ev.title}\n{ev.text}" for ev in chunk.events)
    raw = data.get("summary")
    summary = _whole_sentences(_dedupe_sentences(" ".join(raw.split()))) \
        if isinstance(raw, str) else ""
    fallback = not usable(summary)
    if fallback:
        summary = fallback_summary(chunk)
    # what the model names counts only when the events contain it verbatim
    said = [i for i in strings(data.get("identifiers")) if idf.present(i, source_text)
            and len(i) >= 4 and re.search(r"[/.#_\-\d]", i)]
    entities = [e for e in strings(data.get("entities"), 8, 80) if idf.present(e, source_text)]
    dates = [d for d in strings(data.get("dates"), 6, 10) if idf.DATE.fullmatch(d)
             and (d in source_text or d in {ev.ts.date().isoformat() for ev in chunk.events})]
    return Fields(
        summary=summary,
        identifiers=idf.merge(idf.of_events(chunk.events), said),
        entities=idf.merge([chunk.project] if chunk.project else [], entities, limit=LIST_MAX),
        dates=idf.merge(idf.dates_of(chunk.events), dates),
        decisions=[] if fallback else _new_items(strings(data.get("decisions"), 4), summary),
        open_tasks=idf.merge(
            [] if fallback else _new_items(strings(data.get("open_tasks"), 4), summary),
            idf.todos_of(chunk.events), limit=8),
        fallback=fallback,
        model_text=answer if not fallback else "",
    )


def title(chunk: Chunk) -> str:
    start = chunk.start.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    end = chunk.end.astimezone(UTC).strftime("%H:%M")
    subjects = []
    for ev in chunk.events:
        name = ev.subject.rsplit("/", 1)[-1] if ev.source == "files" else (ev.title or ev.subject)
        if name and name not in subjects:
            subjects.append(name)
    more = f" +{len(subjects) - 3} more" if len(subjects) > 3 else ""
    where = f" [{chunk.project}]" if chunk.project else ""
    return f"{chunk.source}{where} {start}–{end}: {', '.join(subjects[:3])}{more}"


def memory_row(chunk: Chunk, summary: str | Fields, model: str,
               vector: list[float]) -> dict[str, Any]:
    """Given a chunk and its summary (plain text or checked `Fields`), return a
    `memories` row of level `chunk`."""
    fields = summary if isinstance(summary, Fields) else Fields(summary=summary)
    text = fields.text()
    subjects = "\n".join(sorted({ev.subject for ev in chunk.events}))
    t = title(chunk)
    return {
        "id": chunk.id, "ts": chunk.start, "ts_end": chunk.end, "level": "chunk",
        "source": chunk.source, "title": t, "text": text,
        "event_ids": [ev.id for ev in chunk.events], "model": model,
        "created": datetime.now(UTC), "doc": f"{t}\n{text}\n{subjects}", "vector": vector,
        "project": chunk.project, "sources": [], **fields.columns(),
    }
