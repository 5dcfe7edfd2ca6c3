"""The read path over the store besides search: recent events, a timeline, the digest of
a day or week, and forgetting.

Functions over a `Store`; the Engine exposes them (so they run in the worker process)
and `MemoryService` adds what lives in the daemon (the journal). Times are UTC-aware;
days and weeks are the user's local ones (`tz`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from daemon.config import Config
from daemon.errors import InvalidRequest
from daemon.owners import EVERYONE, Owners
from daemon.recall import agenda, timeexpr
from daemon.recall import context as packs
from daemon.recall.fresh import with_fresh
from daemon.recall.hits import Hit
from daemon.recall.search import Filters, hybrid_search
from daemon.store.filters import id_filters, sql_str
from daemon.store.lance import Store

log = logging.getLogger(__name__)
TIMELINE_MAX = 2000
CONTEXT_CANDIDATES = 24
Embed = Callable[[list[str]], list[list[float]]]


def user_tz(cfg: Config) -> tzinfo:
    """The user's timezone: `[search] timezone` when set, else the machine's."""
    return timeexpr.user_zone(cfg.search.timezone)


def search(store: Store, embed: Embed, query: str, k: int, filters: Filters, *,
           now: datetime | None = None, tz: tzinfo = UTC) -> list[Hit]:
    """Hybrid search where a time expression in `query` ("yesterday", "last week")
    becomes the time range, unless the caller gave one, and leaves the query text."""
    now = now or datetime.now(UTC)
    text, filters = _with_time(query, filters, now, tz)
    return hybrid_search(store, text, embed([text])[0], k, filters=filters, now=now)


def _with_time(query: str, f: Filters, now: datetime, tz: tzinfo) -> tuple[str, Filters]:
    if f.since is not None or f.until is not None:
        return query, f
    found = timeexpr.parse(query, now, tz)
    if not found.matched:
        return query, f
    return (found.text or query), replace(f, since=found.since, until=found.until)


def context(store: Store, embed: Embed, query: str, budget_tokens: int, *,
            now: datetime | None = None, tz: tzinfo = UTC,
            owners: Owners = EVERYONE, raw: bool = True,
            fresh: tuple[Hit, ...] = ()) -> dict[str, Any]:
    """A markdown context pack for `query` within `budget_tokens` (daemon/context.py);
    `raw` False leaves raw events out (memories and digests only). `fresh`: events not
    yet indexed that hold the query's words (daemon/recall/fresh.py), packed first, as a
    search returns them.

    When the query names a period ("what did I do yesterday"), that period's digests
    lead the pack; the rest is the best search hits, memories folded with their events.
    """
    now = now or datetime.now(UTC)
    text, f = _with_time(query, Filters(devices=owners.devices, users=owners.users, raw=raw),
                         now, tz)
    hits = hybrid_search(store, text, embed([text])[0], CONTEXT_CANDIDATES, filters=f, now=now)
    if fresh:
        hits = with_fresh(hits, list(fresh), CONTEXT_CANDIDATES)
    digests: list[Hit] = []
    period = ""
    if f.since or f.until:
        lo = f.since or datetime(1970, 1, 1, tzinfo=UTC)
        hi = f.until or now
        period = f"{_iso(lo)} .. {_iso(hi)}"
        overlap = (f"level IN ('week', 'day') AND ts < timestamp '{_utc(hi)}' AND "
                   f"ts_end >= timestamp '{_utc(lo)}'" + _and(owners))
        digests = sorted(store.rows("memories", overlap, 14),
                         key=lambda h: (h.kind != "memory.week", h.ts))
    preface = agenda.section(store, query, owners, f.since, f.until)
    pack = packs.build(query, digests, hits, budget_tokens, period=period, preface=preface)
    return {"query": query, "budget_tokens": budget_tokens, "tokens": pack.tokens,
            "token_count": "estimate: 1 token per 3 bytes of UTF-8 (conservative)",
            "since": _iso(f.since) if f.since else None,
            "until": _iso(f.until) if f.until else None,
            "items": pack.items, "markdown": pack.markdown}


def recent(store: Store, limit: int = 20, source: str | None = None,
           owners: Owners = EVERYONE) -> list[Hit]:
    """The newest `limit` events (of `source`, of `owners`), newest first."""
    return store.rows("events", Filters(source=source, devices=owners.devices,
                                        users=owners.users).where("events"), limit)


def timeline(store: Store, since: datetime | None, until: datetime | None,
             source: str | None = None, limit: int = TIMELINE_MAX,
             owners: Owners = EVERYONE) -> list[Hit]:
    """Events in [since, until), oldest first (at most `limit`, the newest of them)."""
    rows = store.rows("events", Filters(source=source, since=since, until=until,
                                        devices=owners.devices,
                                        users=owners.users).where("events"), limit)
    return sorted(rows, key=lambda h: (h.ts, h.id))


def period_bounds(period: str, day: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """The local day, or the Monday-first week, holding `day`, as UTC instants."""
    if period == "day":
        start = day
        end = day + timedelta(days=1)
    elif period == "week":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(weeks=1)
    else:
        raise InvalidRequest(f"period must be 'day' or 'week', not {period!r}")
    lo = datetime.combine(start, datetime.min.time(), tz).astimezone(UTC)
    hi = datetime.combine(end, datetime.min.time(), tz).astimezone(UTC)
    return lo, hi


def digest(store: Store, period: str, day: date, tz: tzinfo, *, owners: Owners = EVERYONE,
           prefer: tuple[str, str] = ("", "")) -> dict[str, Any]:
    """The digest of the day or week holding `day`, and the memories under it, of
    `owners` only. On a shared store each owner has its own digest: `digests` lists them
    all and `digest` is the one of `prefer` (device, user) when it is among them.

    `digest` is None when compaction has not written one (yet); `chunks` then still
    lists the period's activity memories, so a caller always gets what there is.
    """
    start, end = period_bounds(period, day, tz)
    inside = f"ts >= timestamp '{_utc(start)}' AND ts < timestamp '{_utc(end)}'" + _and(owners)
    digests = sorted(store.rows("memories", f"level = {sql_str(period)} AND {inside}", 50),
                     key=lambda h: (h.device, h.user) != prefer)
    lower = "chunk" if period == "day" else "day"
    below = store.rows("memories", f"level = {sql_str(lower)} AND {inside}",
                       newest_first=False)
    if lower == "day" and not below:  # no day digests yet: show the week's chunks
        lower = "chunk"
        below = store.rows("memories", f"level = 'chunk' AND {inside}", newest_first=False)
    return {"period": period, "date": day.isoformat(), "start": _iso(start), "end": _iso(end),
            "digest": memory_json(digests[0]) if digests else None,
            "digests": [memory_json(h) for h in digests],
            "children_level": lower, "children": [memory_json(h) for h in below]}


def memory_json(h: Hit) -> dict[str, Any]:
    return {"id": h.id, "kind": h.kind, "source": h.source, "project": h.project,
            "ts": _iso(h.ts), "ts_end": _iso(h.ts_end) if h.ts_end else None,
            "title": h.title, "text": h.text, "event_ids": list(h.event_ids),
            "sources": list(h.memory_ids), "device": h.device, "user": h.user}


def forget(store: Store, since: datetime | None = None, until: datetime | None = None,
           source: str | None = None, query: str | None = None,
           dry_run: bool = False, owners: Owners = EVERYONE) -> dict[str, Any]:
    """Delete events and memories (of `owners`) in [since, until), of `source`, and/or containing
    `query` (case-insensitive substring of their text); every given condition must hold.

    A memory built from a deleted event goes too (its summary may repeat it), and so
    does a digest built from a deleted memory: forgetting leaves no paraphrase behind.
    Old table versions are then purged from disk. Return the counts and the deleted
    event and memory ids (the journal deletes those rows and keeps their tombstones).
    Raise ValueError when nothing is named.
    """
    if not any((since, until, source, query and query.strip())):
        raise InvalidRequest("say what to forget: a time range (since/until), a source or a query")
    f = Filters(source=source, since=since, until=until, devices=owners.devices,
                users=owners.users)
    q = (query or "").strip().lower()
    conds = {t: [c for c in (f.where(t), _contains(q)) if c] for t in ("events", "memories")}
    events = store.ids("events", " AND ".join(conds["events"]))
    memories = set(store.ids("memories", " AND ".join(conds["memories"])))
    gone_events = set(events)
    # Memories (and digests) standing on what goes, transitively.
    links = store.memory_links()
    changed = True
    while changed:
        changed = False
        for mid, (event_ids, sources) in links.items():
            if mid not in memories and (gone_events.intersection(event_ids)
                                        or memories.intersection(sources)):
                memories.add(mid)
                changed = True
    out = {"events": len(events), "memories": len(memories), "event_ids": sorted(events),
           "memory_ids": sorted(memories), "dry_run": dry_run}
    if dry_run:
        return out
    for _, where in id_filters(events):
        store.delete("events", where, path="forget")
    for _, where in id_filters(sorted(memories)):
        store.delete("memories", where, path="forget")
    if events or memories:
        store.purge()
    log.info("forgot %d events and %d memories", len(events), len(memories))
    return out


def _and(owners: Owners) -> str:
    where = owners.where()
    return f" AND {where}" if where else ""


def _contains(q: str) -> str | None:
    if not q:
        return None
    like = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"lower(doc) LIKE {sql_str('%' + like + '%')} ESCAPE '\\'"


def _utc(dt: datetime) -> str:
    from daemon.recall.search import _utc as utc_literal

    return utc_literal(dt)


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")
