"""Hybrid search: vector and full-text results from both tables, fused by reciprocal rank.

Given a query, its embedding and a store, return the top `k` hits. Each list
(events × vector, events × text, memories × vector, memories × text) contributes
1 / (RRF_K + rank) for each hit, so a result found by both meaning and words rises.
Full-text lists drop hits far below their best score (see FTS_RELATIVE_FLOOR).

On top of the fusion:
- a recency term: a small bonus halving every RECENCY_HALF_LIFE_DAYS, worth less than one
  rank step near the top, so it breaks near-ties toward what is recent and never buries
  an exact match;
- filters (`Filters`): time range, source, kind, project and memory level, applied
  inside LanceDB (prefilter) so k results are k matching results;
- de-duplication: a chunk memory and the events it summarizes take one slot, at the
  rank of the best of them, which stands for the group; the others are folded into it
  (`covers`, and excerpted in its text), so no fact they held is lost from the top k and
  the k slots go to k different activities. A memory hit also lists its other events.
  Likewise one command run again, one page visited again or one file saved again (same
  source and subject) takes one slot, the others folded into the best of them.
- full-text queries drop question words ("where did I …"), which only match noise.

The four searches of a query run side by side on LanceDB's event loop
(daemon/store/searches.py), each reading only the columns a hit is made of: the results
are those of running them one after the other (tests/daemon/recall/test_search_fast_path.py).
"""

from __future__ import annotations

import logging
import re
from concurrent.futures import Future, wait
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from daemon.owners import Owners
from daemon.recall.hits import Hit
from daemon.store.filters import sql_str
from daemon.store.lance import Store

log = logging.getLogger(__name__)
RRF_K = 60
DEPTH = 50  # candidates per list: a fact's event may rank low in one list and high in another
# Full-text hits far below the best one matched only common words ("the", "token"); fused
# by rank they would outvote an exact match of a rare identifier, so they are dropped. The
# floor is low: a raw event asked about in other words than its own (a file's docstring,
# a command's flags) often shares one rare word with the question and scores a fifth of
# a title that repeats the question's words; without summaries that word is all it has
# (dev week, bench/README.md: 0.3 lost two such facts with and without summaries).
FTS_RELATIVE_FLOOR = 0.1
RECENCY_WEIGHT = 0.002  # at most ~1/8 of a top rank's 1/61
RECENCY_HALF_LIFE_DAYS = 14.0
COVERED_CHARS = 1200  # text kept of each matching event shown inside its memory
_FTS_UNSAFE = re.compile(r"[^\w\s./:-]+", re.UNICODE)


@dataclass(frozen=True)
class Filters:
    """What a search is restricted to; None means anything."""
    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None  # exclusive
    kind: str | None = None  # an event kind ("shell.command") or "memory.<level>"
    project: str | None = None
    level: str | None = None  # chunk, day or week: memories only
    # whose rows (daemon/owners.py): the caller's filters already narrowed to its token's
    devices: tuple[str, ...] | None = None
    users: tuple[str, ...] | None = None
    # raw events too (the memory:raw scope); False: memories and digests only, without
    # the events they were made of (no matching event text, no list of sources)
    raw: bool = True

    def tables(self) -> tuple[str, ...]:
        if self.level or (self.kind or "").startswith("memory"):
            return ("memories",)
        if not self.raw:
            return () if self.kind else ("memories",)
        if self.kind:
            return ("events",)
        return ("events", "memories")

    def where(self, table: str, columns: set[str] | None = None) -> str | None:
        """The LanceDB filter for `table` (a memory matches a range it overlaps)."""
        parts = []
        if self.source:
            parts.append(f"source = {sql_str(self.source)}")
        owners = Owners(self.devices, self.users).where()
        if owners:
            parts.append(owners)
        end = "ts_end" if table == "memories" else "ts"
        if self.since:
            parts.append(f"{end} >= timestamp '{_utc(self.since)}'")
        if self.until:
            parts.append(f"ts < timestamp '{_utc(self.until)}'")
        if table == "events" and self.kind:
            parts.append(f"kind = {sql_str(self.kind)}")
        level = self.level or (self.kind.split(".", 1)[1] if self.kind and "." in self.kind
                               and self.kind.startswith("memory") else None)
        if table == "memories" and level:
            parts.append(f"level = {sql_str(level)}")
        if self.project:
            if table == "memories" and (columns is None or "project" in columns):
                parts.append(f"project = {sql_str(self.project)}")
            else:  # events carry no project: match it in their path, URL or command
                like = self.project.replace("%", "").replace("_", "\\_")
                parts.append(f"lower(subject) LIKE {sql_str('%' + like.lower() + '%')}")
        return " AND ".join(parts) or None


def _utc(dt: datetime) -> str:
    """`dt` as a UTC timestamp literal for a LanceDB filter. The year is always four
    digits (strftime writes year 203 as '203', which Lance cannot parse), and a time
    whose UTC is outside years 1..9999 is clamped to that end."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        dt = dt.astimezone(UTC)
    except OverflowError:
        dt = datetime.min.replace(tzinfo=UTC) if dt.year == 1 else datetime.max.replace(tzinfo=UTC)
    return dt.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")


# Function words of English questions. The index keeps them (a path or a title may need
# them), but in a question ("where did I save the …") they only add hits that share
# "the" and "did" with it; a query of nothing but them is kept whole.
QUERY_STOP_WORDS = QUERY_STOP_WORDS_ORIG = frozenset("""
a an the and or but if of at by for with about against between into through during before
after above below to from up down in out on off over under again further then once here
there when where why how all any both each few more most other some such no nor not only
own same so than too very can will just should now i me my myself we our you your he him
his she her it its they them their what which who whom this that these those am is are was
were be been being have has had having do does did doing would could get got
""".split())


def fts_query(text: str) -> str:
    """Strip query-syntax characters and question words so any user text is a valid and
    focused full-text query."""
    words = _FTS_UNSAFE.sub(" ", text).split()
    content = [w for w in words if w.lower() not in QUERY_STOP_WORDS]
    return " ".join(content or words)


def _recency(ts: datetime, now: datetime) -> float:
    age_days = max((now - ts).total_seconds() / 86400, 0.0)
    return RECENCY_WEIGHT * 0.5 ** (age_days / RECENCY_HALF_LIFE_DAYS)


def hybrid_search(store: Store, query: str, vector: list[float], k: int, *,
                  source: str | None = None, since: datetime | None = None,
                  until: datetime | None = None, filters: Filters | None = None,
                  now: datetime | None = None) -> list[Hit]:
    """Given a query and its embedding, return the best `k` hits (see the module doc)."""
    f = filters or Filters(source=source, since=since, until=until)
    now = now or datetime.now(UTC)
    depth = max(k * 4, DEPTH)
    text = fts_query(query)
    tables = [(table, f.where(table, store.columns(table))) for table in f.tables()]
    started: list[Future[list[Hit]]] = []
    try:
        started += [store.vector_search_soon(table, vector, depth, where)
                    for table, where in tables]
        texts = [_text_leg(store, table, text, depth, where) for table, where in tables if text]
        started += texts
        lists = [leg.result() for leg in started[:len(tables)]]
    finally:
        wait(started)  # a failing query fails the search only once the others are done
    texts_found = [_text_hits(leg, text) for leg in texts]
    # One floor over both tables: a rare identifier matched in one event is not drowned
    # by memories that share only the query's common words.
    top = max((h.score for hits in texts_found for h in hits), default=0.0)
    lists += [kept for hits in texts_found
              if (kept := [h for h in hits if h.score >= top * FTS_RELATIVE_FLOOR])]
    best = fuse(lists, query, now)[:k]
    return with_sources(store, best, Owners(f.devices, f.users)) if f.raw else best


def _text_leg(store: Store, table: str, text: str, depth: int,
              where: str | None) -> Future[list[Hit]]:
    try:
        return store.text_search_soon(table, text, depth, where)
    except (ValueError, RuntimeError, OSError) as exc:  # refused before it started
        failed: Future[list[Hit]] = Future()
        failed.set_exception(exc)
        return failed


def _text_hits(leg: Future[list[Hit]], text: str) -> list[Hit]:
    try:
        return leg.result()
    except (ValueError, RuntimeError, OSError) as exc:
        log.warning("full-text search failed for %r (%s); using vectors only", text, exc)
        return []


SOURCE_LINES = 12  # events listed under a memory hit
SOURCE_CHARS = 160


def with_sources(store: Store, hits: list[Hit], owners: Owners | None = None) -> list[Hit]:
    """Give each chunk memory among `hits` the list of its events (time, kind, path, URL
    or command) that did not match themselves: a summary of a small model drops names,
    and the agent needs the concrete sources to cite or open."""
    wanted = {e for h in hits if h.event_ids
              for e in h.event_ids[:SOURCE_LINES * 2] if e not in {c.id for c in h.covers}}
    if not wanted:
        return hits
    try:
        quoted = ", ".join(sql_str(i) for i in sorted(wanted))
        whose = (owners.where() if owners else None) or "true"  # never another owner's
        rows = {r["id"]: r for r in store.events.search().where(f"id IN ({quoted}) AND {whose}")
                .select(["id", "ts", "kind", "subject", "title"]).limit(len(wanted)).to_list()}
    except (ValueError, RuntimeError, OSError) as exc:
        log.warning("could not list the sources of memory hits: %s", exc)
        return hits
    out = []
    for h in hits:
        listed = [rows[e] for e in h.event_ids if e in rows][:SOURCE_LINES]
        if not listed:
            out.append(h)
            continue
        lines = [h.text, "", "Sources:"]
        for r in sorted(listed, key=lambda r: r["ts"]):
            what = (r["subject"] or r["title"] or "")[:SOURCE_CHARS]
            lines.append(f"- {r['ts'].astimezone(UTC):%Y-%m-%d %H:%M} [{r['kind']}] {what}")
        more = len(h.event_ids) - len(h.covers) - len(listed)
        if more > 0:
            lines.append(f"- … and {more} more")
        out.append(replace(h, text="\n".join(lines)))
    return out


def fuse(lists: list[list[Hit]], query: str, now: datetime) -> list[Hit]:
    """Fuse ranked lists by reciprocal rank (plus recency), then de-duplicate."""
    fused: dict[str, float] = {}
    best: dict[str, Hit] = {}
    for hits in lists:
        for rank, hit in enumerate(hits):
            fused[hit.id] = fused.get(hit.id, 0.0) + 1.0 / (RRF_K + rank + 1)
            best.setdefault(hit.id, hit)
    for i, hit in best.items():
        fused[i] += _recency(hit.ts, now)
    ranked = [replace(best[i], score=round(fused[i], 6))
              for i in sorted(fused, key=lambda i: fused[i], reverse=True)]
    return dedupe(ranked, query)


def dedupe(ranked: list[Hit], query: str = "") -> list[Hit]:
    """A chunk memory and the events it summarizes take one slot, at the rank of the best
    of them, which stands for the group: the others are folded into it (`covers`, and
    excerpted in its text), so the k slots go to k different activities and no fact of
    a folded member is lost. Digests are not folded with their chunks: a day is a
    different answer than an hour. Events of the same thing (one command run again, one
    page visited again, one file saved again: same source and subject) not covered by a
    memory take one slot too, at the best one's rank."""
    group: dict[str, str] = {}
    for h in ranked:  # an event belongs to the best-ranked memory covering it
        group.setdefault(h.id, h.id)
        for member in h.event_ids:
            if group.get(member, member) == member:
                group[member] = h.id
    same: dict[tuple[str, str], str] = {}  # (source, subject) -> its best-ranked event
    for h in ranked:
        if h.table == "events" and h.subject and group[h.id] == h.id:
            group[h.id] = same.setdefault((h.source, h.subject), h.id)
    head_of: dict[str, str] = {}  # group -> the id standing for it
    folded: dict[str, list[Hit]] = {}
    order: list[str] = []
    for h in ranked:
        g = group.get(h.id, h.id)
        if g not in head_of:
            head_of[g] = h.id
            folded[h.id] = []
            order.append(h.id)
        else:
            folded[head_of[g]].append(h)
    by_id = {h.id: h for h in ranked}
    out = []
    for i in order:
        head, members = by_id[i], folded[i]
        if members:
            head = replace(head, covers=tuple(members),
                           text=_with_covered(head.text, members, query))
        out.append(head)
    return out


def _with_covered(text: str, folded: list[Hit], query: str) -> str:
    lines = [text, "", f"Matching items it covers ({len(folded)}):"]
    terms = _terms(query)
    for h in folded:
        body = excerpt(h.text, terms, COVERED_CHARS)
        when = h.ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
        lines.append(f"- {when} [{h.kind}] {h.title}" + (f": {body}" if body else ""))
    return "\n".join(lines)


_STOP = frozenset("the and for with what did was were how who where when which that this "
                  "have has had from into about over are you your our its not but can".split())


def _terms(query: str) -> set[str]:
    return {w for w in re.findall(r"\w+", query.lower()) if len(w) > 2 and w not in _STOP}


def excerpt(text: str, terms: set[str], limit: int) -> str:
    """`text` cut to about `limit` characters: its first lines, then the lines sharing
    most words with the query, in their original order, with "…" where lines were left."""
    text = text.strip()
    if len(text) <= limit:
        return " ".join(text.split()) if "\n" not in text else text
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    score = [len(terms & set(re.findall(r"\w+", ln.lower()))) for ln in lines]
    keep: set[int] = set()
    used = 0
    order = [0, 1, 2] + sorted(range(len(lines)), key=lambda i: (-score[i], i))
    for i in order:
        if i >= len(lines) or i in keep:
            continue
        if i > 2 and score[i] == 0:
            break
        if used + len(lines[i]) > limit:
            continue
        keep.add(i)
        used += len(lines[i]) + 1
    out: list[str] = []
    for i in sorted(keep):
        if out and i - 1 not in keep:
            out.append("…")
        out.append(lines[i][:limit])
    if max(keep, default=0) < len(lines) - 1:
        out.append("…")
    return "\n".join(out)
