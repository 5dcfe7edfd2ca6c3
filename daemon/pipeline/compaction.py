"""Compaction: chunk memories → daily digests → weekly digests.

A digest is a `memories` row with `level` `day` (id `day-YYYY-MM-DD`) or `week` (id
`week-YYYY-Www`, ISO weeks, Monday first), days and weeks being the user's (`[search]
timezone`, default the machine's, as the read path counts them), `ts`/`ts_end` bounding
the period's activity (stored UTC), and `sources`
listing the ids it was made from (chunks for a day, days for a week). Its prose comes
from the model for a day (task `compaction`, plain sentences, each checked against the
sources) and from the days' checked prose for a week; its identifiers, entities,
dates and open tasks are the union of its sources', merged deterministically, so what a
chunk kept its day and week keep too.

Staleness needs no bookkeeping: a digest is stale when its sources are not exactly the
memories of its period, or one of them is newer than the digest. A late event makes a
new chunk in an old day, so the next run re-digests that day, then its week.
A digest is never replaced by an empty one: when the model's answer is unusable, a
digest it wrote before keeps its prose and only gains the merged fields.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from daemon.pipeline import faithful
from daemon.pipeline import identifiers as idf
from daemon.pipeline.summarize import FALLBACK_MODEL, Fields, dedupe_sentences, parse, usable

log = logging.getLogger(__name__)

SYSTEM = ("You write short, factual digests of a person's computer activity from notes "
          "about it. Never invent anything that is not in the notes.")
# The model writes only a day's prose, as plain sentences: decisions and open tasks are
# its sources' checked ones, merged (a digest model asked for them echoed the question or
# listed event kinds), and a week's prose is its days' (no model call). No JSON grammar:
# on the bundled 0.5B model a schema halved the speed of every answer token.
# Prompt evaluation is the cost (~50 tokens/s on two cores): the notes are the chunks'
# prose without their bracketed kinds and times, at most ~550 tokens of them.
MAX_PROMPT_CHARS = 1800
MODEL_LEVELS = ("day",)  # the levels whose prose a model writes
LEVELS = ("chunk", "day", "week")
ROW_COLUMNS = ["id", "ts", "ts_end", "level", "source", "title", "text", "model", "created",
               "project", "sources", "identifiers", "entities", "dates", "decisions",
               "open_tasks"]
STALE_COLUMNS = ["id", "ts", "created"]  # what `stale_periods` reads of a member


def day_key(ts: datetime, tz: tzinfo = UTC) -> str:
    return ts.astimezone(tz).date().isoformat()


def week_key(ts: datetime, tz: tzinfo = UTC) -> str:
    y, w, _ = ts.astimezone(tz).isocalendar()
    return f"{y}-W{w:02d}"


def digest_id(level: str, key: str, owner: str = "") -> str:
    """`day-2026-11-24`, `week-2026-W48`; on a store several daemons share, each owner's
    digest of a period is its own row, so `owner` (`~user@device`) follows."""
    return f"{level}-{key}{owner}"


def period(level: str, key: str, tz: tzinfo = UTC) -> tuple[datetime, datetime]:
    """The bounds [start, end), as UTC instants, of a day (`2026-11-24`) or ISO week
    (`2026-W48`) in zone `tz`."""
    if level == "day":
        first = date.fromisoformat(key)
        last = first + timedelta(days=1)
    else:
        year, week = key.split("-W")
        first = date.fromisocalendar(int(year), int(week), 1)
        last = first + timedelta(days=7)
    return (datetime.combine(first, time(), tz).astimezone(UTC),
            datetime.combine(last, time(), tz).astimezone(UTC))


def _prose(row: dict[str, Any]) -> str:
    """A memory's text without its appended lists: what a digest prompt needs."""
    keep = [ln for ln in (row.get("text") or "").split("\n")
            if not ln.startswith(("Identifiers: ", "Decisions: ", "Open tasks: ", "Mentions: "))]
    return " ".join(" ".join(keep).split())


# "(file.modified, 2026-11-28 09:31–09:39 UTC)": the prompt line's time says it already
_KIND_AND_TIME = re.compile(r" ?\([a-z]+\.[a-z_]+, \d{4}-\d\d-\d\d [^)]*\)")


def _note(row: dict[str, Any]) -> str:
    """A chunk memory as one short prompt note: its prose without kinds and times."""
    return _KIND_AND_TIME.sub("", _prose(row))


def _clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters at a word's end (the model copies a cut word)."""
    if len(text) <= limit:
        return text
    cut = text[:limit - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip(" ,;:") + "…"


def prompt(level: str, key: str, rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The model's messages for the digest of `rows` (sorted by time)."""
    per_row = max(80, MAX_PROMPT_CHARS // max(len(rows), 1))
    lines: list[str] = []
    used = 0
    for i, r in enumerate(rows):
        when = (r["ts"].astimezone(UTC).strftime("%H:%M") if level == "day"
                else r["ts"].astimezone(UTC).strftime("%a %Y-%m-%d"))
        where = f" [{r['project']}]" if r.get("project") else ""
        tasks = f" Open: {'; '.join(r['open_tasks'][:3])}." if r.get("open_tasks") else ""
        line = f"- {when}{where} {_clip(_note(r) + tasks, per_row)}"
        if used + len(line) > MAX_PROMPT_CHARS:  # the context window is 4,096 tokens
            lines.append(f"- … and {len(rows) - i} more")
            break
        lines.append(line)
        used += len(line) + 1
    label = f"the day {key}" if level == "day" else f"the week {key}"
    user = f"Notes about {label}:\n" + "\n".join(lines) + f"\n\nWrite {INSTRUCTION}"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def fallback_summary(level: str, key: str, rows: list[dict[str, Any]]) -> str:
    """A digest written from its sources alone: a week's always (its days' prose, day by
    day), a day's when the model gives nothing. It names only what its sources name:
    where the time went, most first, then each source's first line (no counts: a number
    the sources do not hold is what the faithfulness check flags, whoever wrote it)."""
    if level == "week":
        return week_summary(key, rows)
    by_project: dict[str, int] = {}
    for r in rows:
        name = r.get("project") or r.get("source") or "other"
        by_project[name] = by_project.get(name, 0) + 1
    what = ", ".join(p for p, _ in sorted(by_project.items(), key=lambda x: -x[1]))
    head = f"Day {key}: {what}."
    firsts = idf.merge(_prose(r).split(". ")[0].rstrip(".") for r in rows)[:6]
    return head + " " + ". ".join(f for f in firsts if f) + "."


def week_summary(key: str, days: list[dict[str, Any]]) -> str:
    """A week's prose: each day's first two sentences, under its weekday and date."""
    parts = [f"Week {key}."]
    for d in days:
        first = " ".join(faithful.sentences(_prose(d))[:2])
        if first:
            day = date.fromisoformat(d["id"][4:14])  # day-YYYY-MM-DD[~owner]: the user's day
            parts.append(f"{day.strftime('%A %Y-%m-%d')}: {first}")
    return " ".join(parts)


def source_text(rows: list[dict[str, Any]]) -> str:
    """All a digest may name: its sources' text, titles, lists and days (with weekdays)."""
    parts: list[str] = []
    for r in rows:
        parts += [r.get("title") or "", r.get("text") or "", r.get("project") or ""]
        for name in ("identifiers", "entities", "decisions", "open_tasks"):
            parts += list(r.get(name) or [])
        for d in r.get("dates") or []:
            try:
                parts.append(date.fromisoformat(d).strftime("%Y-%m-%d %A %B"))
            except ValueError:
                parts.append(d)
        for ts in (r.get("ts"), r.get("ts_end")):
            if ts:
                parts.append(ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M %A %B %a"))
    return "\n".join(parts)


def _items(rows: list[dict[str, Any]], name: str, limit: int) -> list[str]:
    """The union of the sources' (checked) items, placeholders and repeats left out."""
    merged = idf.merge(*(r.get(name) or [] for r in rows))
    return [i for i in merged if not idf.placeholder(i)][:limit]


INSTRUCTION = ("two or three plain sentences on what the person worked on, per project, "
               "naming files, pages, tickets and commands exactly as the notes do. Use only "
               "what the notes say; never guess. No list, no heading.")
_INSTRUCTION_WORDS = frozenset(re.findall(r"[a-z]+", INSTRUCTION.lower()))


def _grounded_prose(summary: str, src: faithful.Sources) -> tuple[str, list[str]]:
    """The digest's sentences that say what its sources say: a sentence echoing the
    prompt's instruction ("Three to five sentences on what the person worked on...",
    which the 0.5B model sometimes answers with) or made mostly of words the sources
    lack is dropped; the dropped ones are returned too."""
    kept: list[str] = []
    dropped: list[str] = []
    for sentence in faithful.sentences(summary):
        words = re.findall(r"[a-z]+", sentence.lower())
        echo = bool(words) and sum(w in _INSTRUCTION_WORDS for w in words) / len(words) >= 0.6
        if echo or not faithful.grounded(sentence, src, share=0.5):
            dropped.append(f"(words) {sentence[:80]}")
        else:
            kept.append(sentence)
    return " ".join(kept), dropped


# What the 0.5B model writes though asked for plain sentences: markdown emphasis and
# headings, numbered or bulleted lines ("1. **Backtest Decay.py**: This script ...").
_MARKUP = re.compile(r"\*\*|__|`|^#+\s*|^\s*(?:\d+[.)]|[-*•])\s+", re.M)


def prose_answer(answer: str) -> str:
    """The model's prose as sentences: its plain answer (markdown and list markers
    removed, each line a sentence), or the `summary` of a JSON one (a model that
    answers in JSON anyway, or a digest written before answers were plain)."""
    text = (answer or "").strip()
    if text.startswith("{"):
        raw = parse(text).get("summary")
        return raw if isinstance(raw, str) else ""
    text = re.sub(r"^(?:summary|digest)\s*:\s*", "", text, flags=re.I)
    lines = [ln.strip() for ln in _MARKUP.sub("", text).splitlines() if ln.strip()]
    return " ".join(ln if ln[-1] in ".!?:" else ln + "." for ln in lines)


def digest_fields(level: str, key: str, rows: list[dict[str, Any]], answer: str) -> Fields:
    """Given a digest's sources and the model's answer, return its fields: the model's
    prose, checked against the sources (a sentence naming what they lack is dropped), or
    a fallback; and the deterministic union of the sources' checked lists."""
    raw = prose_answer(answer)
    summary = dedupe_sentences(" ".join(raw.split()))
    unsupported: list[str] = []
    if summary:
        src = faithful.Sources(source_text(rows))
        unsupported = faithful.check(summary, src).unsupported
        summary = faithful.repair(summary, src) if unsupported else summary
        summary, dropped = _grounded_prose(summary, src)
        unsupported += dropped
    fallback = not usable(summary)
    if fallback:
        summary = fallback_summary(level, key, rows)

    def union(name: str, limit: int | None = None) -> list[str]:
        return idf.merge(*(r.get(name) or [] for r in rows), limit=limit)

    return Fields(
        summary=summary,
        identifiers=union("identifiers"),
        entities=idf.merge([r["project"] for r in rows if r.get("project")],
                           union("entities"), limit=40),
        dates=sorted(set(union("dates"))),
        decisions=_items(rows, "decisions", 20),
        open_tasks=_items(rows, "open_tasks", 20),
        fallback=fallback,
        model_text=answer,
        unsupported=unsupported,
    )


def digest_row(level: str, key: str, rows: list[dict[str, Any]], fields: Fields, model: str,
               vector: list[float], tz: tzinfo = UTC, owner: str = "") -> dict[str, Any]:
    start, end = period(level, key, tz)
    first = min(r["ts"] for r in rows)
    last = max(r["ts_end"] or r["ts"] for r in rows)
    projects = idf.merge(r.get("project") or "" for r in rows)
    sources = sorted({r.get("source") or "" for r in rows} - {""})
    title = (f"{level} digest {key}: " + (", ".join(projects[:4]) or "activity")
             + (f" +{len(projects) - 4} more" if len(projects) > 4 else ""))
    text = fields.text()
    # Found by what it holds, read as prose: the model's sentences only restate what
    # the sources hold (each is checked), so the digest's full-text doc and vector are
    # its extracted part, and the prose never moves its rank.
    found_by = dataclasses.replace(fields, summary=fallback_summary(level, key, rows))
    return {
        "id": digest_id(level, key, owner), "ts": max(first, start), "ts_end": min(last, end),
        "level": level, "source": ",".join(sources), "title": title, "text": text,
        "event_ids": [], "model": model, "created": datetime.now(UTC),
        "doc": f"{title}\n{found_by.text()}", "vector": vector,
        "project": projects[0] if len(projects) == 1 else "",
        "sources": [r["id"] for r in rows], **fields.columns(),
    }


def stale_periods(level: str, members: Iterable[dict[str, Any]],
                  digests: Iterable[dict[str, Any]],
                  tz: tzinfo = UTC, owner: str = "") -> dict[str, list[dict[str, Any]]]:
    """Given the rows one level down and the digests of `level`, return the periods whose
    digest is missing or stale, newest first, each with its (time-sorted) member rows."""
    keyf = day_key if level == "day" else week_key
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in members:
        # a day digest's ts may precede its first chunk by nothing: key it by its own day
        when = r["ts"] if level == "day" else period("day", r["id"][4:14], tz)[0]
        groups.setdefault(keyf(when, tz), []).append(r)
    have = {d["id"]: d for d in digests}
    out: dict[str, list[dict[str, Any]]] = {}
    for key, rows in sorted(groups.items(), reverse=True):  # newest first
        rows.sort(key=lambda r: (r["ts"], r["id"]))
        d = have.get(digest_id(level, key, owner))
        if (d is None or set(d.get("sources") or []) != {r["id"] for r in rows}
                or max(r["created"] for r in rows) > d["created"]):
            out[key] = rows
    return out


def keep_prose(new: Fields, old: dict[str, Any] | None) -> Fields:
    """When the model failed this time but wrote the old digest, keep the old prose:
    a digest never trades a written summary for a lesser one. (A week's prose is its
    days', never a model's: `level` not in MODEL_LEVELS keeps nothing.)"""
    if (not new.fallback or old is None or old.get("model") == FALLBACK_MODEL
            or old.get("level") not in MODEL_LEVELS):
        return new
    prose = _prose(old)
    if not prose:
        return new
    new.summary = prose
    return new
