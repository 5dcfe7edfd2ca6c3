"""Turn an activity chunk into a prompt, the model's JSON answer into a faithful memory.

Faithful by construction: what a chunk memory says about activity (files, pages,
commands, identifiers, days) is extracted from the events (`fallback_summary`,
`daemon.pipeline.identifiers`: identifiers, dates, the files' key lines, the decisions
and to-dos they state). The model, under a JSON schema, writes only what extraction
cannot: a one-sentence topic line and the decisions and open tasks the log states. Each
is checked against the events by `daemon.pipeline.faithful` (which shares no code with
this module) before it is stored: a topic sentence naming what the events lack is
dropped, a decision or task not grounded in them is dropped. An empty, unparseable or
wholly unfaithful answer leaves the extractive memory alone (`fallback`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from daemon.pipeline import faithful
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
TOPIC_CHARS = 120  # the model's topic phrase


def answer_tokens(events: int, cap: int) -> int:
    """The token budget of a chunk's answer: small chunks need less (up to `cap`)."""
    return min(cap, 64 + 16 * events)


def dedupe_sentences(text: str) -> str:
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


# Key order is generation order: the topic comes first, so an answer cut off by
# max_tokens still carries it (`parse` recovers it from the unfinished JSON).
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        # The model writes only what extraction cannot: a short topic line and the
        # decisions and tasks the log itself states. Lengths bound the answer in the
        # grammar (the 0.5B model otherwise loops until max_tokens).
        "summary": {"type": "string", "maxLength": TOPIC_CHARS},
        "decisions": _list(2, 160),
        "open_tasks": _list(2, 160),
    },
    "required": ["summary", "decisions", "open_tasks"],
}
RESPONSE_FORMAT = {"type": "json_object", "schema": SCHEMA}


MENTIONS_LINE = "\nMentions: "  # starts a memory's last line: the names its files hold


@dataclass
class Fields:
    """A memory's text and structured fields, as stored."""

    summary: str
    identifiers: list[str] = field(default_factory=list)
    entities: list[str] = field(default_factory=list)
    dates: list[str] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    open_tasks: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)  # key lines of the files, verbatim
    mentions: list[str] = field(default_factory=list)  # names the files hold, verbatim
    fallback: bool = False  # the model's answer was empty or unusable
    model_text: str = ""  # what the model wrote, before anything was put back
    unsupported: list[str] = field(default_factory=list)  # what the model named, sources lack

    def text(self) -> str:
        """The memory's text: the summary, decisions, open tasks, every identifier the
        prose does not already name, so full-text search finds them all, and last the
        names its files hold that nothing above says ("Mentions: ")."""
        main = self.main_text()
        lost = idf.missing(self.mentions, main)
        return main + (MENTIONS_LINE + ", ".join(lost) if lost else "")

    def main_text(self) -> str:
        """The text without its "Mentions:" line."""
        parts = [dedupe_sentences(self.summary.strip())]
        if self.facts:
            parts.append("Facts: " + "; ".join(self.facts))
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
            "Answer with a JSON object. summary: a short phrase (at most 12 words) naming "
            "the topic, using only words and names from the log; do not guess a purpose. "
            "decisions: decisions the log itself states. open_tasks: things the log itself "
            "says are still to do. Use [] when the log states none; never guess.")
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
    # no counts: every number a memory states must be one its events hold (faithful.py)
    shown = ", ".join(names[:8]) + (" and more" if len(names) > 8 else "")
    what = ", ".join(k for k, _ in kinds.most_common())
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


def source_text(chunk: Chunk) -> str:
    """All a chunk's memory may name: its events (kind, time, subject, title, text), their
    days (with weekday and month names), its project."""
    days = sorted({ev.ts.astimezone(UTC).strftime("%Y-%m-%d %A %B") for ev in chunk.events})
    parts = [f"{ev.kind} {ev.ts.astimezone(UTC):%Y-%m-%d %H:%M}\n{ev.subject}\n{ev.title}\n"
             f"{ev.text}" for ev in chunk.events]
    return "\n".join([*parts, *days, chunk.project])


def _topic(raw: Any, src: faithful.Sources) -> tuple[str, list[str]]:
    """The model's topic line, cut to whole sentences, without any sentence that names
    what the events do not contain or whose words mostly are not theirs ("Google Mail:
    Project Update" for three mail pages); and what it named that they lack."""
    if not isinstance(raw, str):
        return "", []
    text = _whole_sentences(dedupe_sentences(" ".join(raw.split())))
    unsupported = faithful.check(text, src).unsupported
    kept = []
    for sentence in faithful.sentences(faithful.repair(text, src) if unsupported else text):
        if faithful.grounded(sentence, src, share=0.75):
            kept.append(sentence)
        else:
            unsupported.append(f"(words) {sentence[:80]}")
    return " ".join(kept), unsupported


def _stated(items: Any, cues: faithful.Sources | None, summary: str) -> list[str]:
    """The decisions or tasks the model offers that the events state: grounded in their
    lines that state a choice or a task (`idf.cue_lines`; none: nothing is stated), none
    of them a placeholder, an event kind or a bare URL. (The 0.5B model otherwise lists
    what was done, "Visit Hacker News", as decisions.)"""
    if cues is None:
        return []
    kept = [i for i in strings(items, 4)
            if not idf.placeholder(i) and faithful.grounded(i, cues, share=0.75)]
    return _new_items(kept, summary)


def needs_model(chunk: Chunk) -> bool:
    """Whether the model has something to add to the chunk's extracted memory: a decision
    or task the user's own events state (`idf.cue_lines`; a visited page's title that says
    "plan" or "next" states nothing the user decided). Without one it could add only a
    topic line, for seconds of CPU per chunk; the memory is then extracted alone."""
    return bool(idf.cue_lines(ev for ev in chunk.events if ev.source != "browser"))


def chunk_fields(chunk: Chunk, answer: str) -> Fields:
    """Given a chunk and the model's raw answer, return the checked and completed fields.
    What the memory says about activity comes from the events (`fallback_summary`, the
    identifiers, the files' key lines); the model adds a checked topic line and the
    decisions and tasks the events state."""
    data = parse(answer)
    src = faithful.Sources(source_text(chunk))
    topic, unsupported = _topic(data.get("summary"), src)
    fallback = not usable(topic)
    activity = fallback_summary(chunk)
    summary = activity if fallback else f"{topic.rstrip('.')}. {activity}"
    lines = idf.cue_lines(chunk.events)
    cues = faithful.Sources("\n".join(lines)) if lines and not fallback else None
    decisions = _stated(data.get("decisions"), cues, topic)
    tasks = [t for t in _stated(data.get("open_tasks"), cues, topic)
             if t.lower() not in {d.lower() for d in decisions}]
    return Fields(
        summary=summary,
        identifiers=idf.of_events(chunk.events),
        entities=[chunk.project] if chunk.project else [],
        dates=idf.dates_of(chunk.events),
        decisions=idf.merge(decisions, idf.decisions_of(chunk.events), limit=8),
        open_tasks=idf.merge(tasks, idf.todos_of(chunk.events), limit=8),
        facts=idf.facts_of(chunk.events),
        mentions=idf.mentions_of(chunk.events),
        fallback=fallback,
        model_text=answer,
        unsupported=unsupported,
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
    # what is embedded and indexed: the mentions after the subjects, so a long list of
    # names does not push the subjects past the embedder's window
    main = fields.main_text()
    doc = f"{t}\n{main}\n{subjects}{text[len(main):]}"
    return {
        "id": chunk.id, "ts": chunk.start, "ts_end": chunk.end, "level": "chunk",
        "source": chunk.source, "title": t, "text": text,
        "event_ids": [ev.id for ev in chunk.events], "model": model,
        "created": datetime.now(UTC), "doc": doc, "vector": vector,
        "project": chunk.project, "sources": [], **fields.columns(),
    }
