"""Activity searchable the moment it is journaled, before the worker has indexed it.

An event waits in the journal until the worker embeds and stores it: seconds when the
worker is warm, more when it starts cold or a backfill is ahead of it. Until then a search
also looks at the journal's new events and returns those that hold every word of the query
(a file just saved, a command just run): full text at once, vectors shortly after.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from typing import Any

from daemon.intake.journal import Journal
from daemon.owners import Owners
from daemon.recall import timeexpr
from daemon.recall.hits import Hit

# words a question is phrased with, not what it asks about
_STOP = frozenset("""a an the and or but of to in on at for from by with about as is are was
were be been being do does did done have has had i me my we our you your it its this that
these those what which who whom whose when where why how there here any some all no not
can could would should will shall may might must into onto over under again still just
than then so if""".split())
_WORD = re.compile(r"[\w.@/+-]+")
MAX_WORDS = 8


def query_words(query: str) -> list[str]:
    """The words of `query` an event must hold, lower-case, question words left out."""
    out: list[str] = []
    for w in _WORD.findall(query.lower()):
        w = w.strip(".-/")
        if len(w) >= 2 and w not in _STOP and w not in out:
            out.append(w)
    return out[:MAX_WORDS]


def fresh_hits(journal: Journal, query: str, limit: int, owners: Owners,
               me: tuple[str, str], score: float, *, tz: tzinfo = UTC,
               **filters: Any) -> list[Hit]:
    """The journal's not yet indexed events holding every word of `query`, newest first,
    as hits of `score`; none when `owners` may not read this daemon's own (`me`: device,
    user) events. `filters`: source, since, until, kind. A time expression in `query`
    ("today", "last week") is a range in the user's zone `tz` unless since/until are
    given, as for the store's search (daemon/recall/reads.py), not words to match."""
    device, user = me
    if ((owners.devices is not None and device not in owners.devices)
            or (owners.users is not None and user not in owners.users)):
        return []
    if filters.get("since") is None and filters.get("until") is None:
        found = timeexpr.parse(query, datetime.now(UTC), tz)
        if found.matched:
            query = found.text
            filters = {**filters, "since": found.since, "until": found.until}
    words = query_words(query)
    if not words or limit <= 0:
        return []
    events = journal.new_matching(words, limit, source=filters.get("source"),
                                  since=filters.get("since"), until=filters.get("until"),
                                  kind=filters.get("kind"))
    return [Hit(id=e.id, table="events", source=e.source, kind=e.kind, ts=e.ts,
                title=e.title or e.subject, text=e.text, score=score, event_ids=(e.id,),
                device=device, user=user) for e in events]


def with_fresh(hits: list[Hit], fresh: list[Hit], k: int) -> list[Hit]:
    """`fresh` first (an exact match of the newest activity, at most a third of `k`, one at
    least), then `hits`, each id once, `k` in all."""
    take = fresh[:max(1, k // 3)]
    seen = {h.id for h in take}
    return (take + [h for h in hits if h.id not in seen])[:k]

