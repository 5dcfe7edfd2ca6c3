"""Hybrid search: vector and full-text results from both tables, fused by reciprocal rank.

Given a query, its embedding and a store, return the top `k` hits. Each list
(events × vector, events × text, memories × vector, memories × text) contributes
1 / (RRF_K + rank) for each hit, so a result found by both meaning and words rises.
Full-text lists keep only hits near their best score (see FTS_RELATIVE_FLOOR).
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from datetime import datetime

from daemon.hits import Hit
from daemon.store import Store

log = logging.getLogger(__name__)
RRF_K = 60
# Full-text hits far below the best one matched only common words ("the", "token"); fused
# by rank they would outvote an exact match of a rare identifier, so they are dropped.
FTS_RELATIVE_FLOOR = 0.3
_FTS_UNSAFE = re.compile(r"[^\w\s./:-]+", re.UNICODE)


def _where(source: str | None, since: datetime | None, until: datetime | None) -> str | None:
    parts = []
    if source:
        parts.append(f"source = '{source.replace(chr(39), chr(39) * 2)}'")
    if since:
        parts.append(f"ts >= timestamp '{since.strftime('%Y-%m-%d %H:%M:%S')}'")
    if until:
        parts.append(f"ts < timestamp '{until.strftime('%Y-%m-%d %H:%M:%S')}'")
    return " AND ".join(parts) or None


def fts_query(text: str) -> str:
    """Strip query-syntax characters so any user text is a valid full-text query."""
    return " ".join(_FTS_UNSAFE.sub(" ", text).split())


def hybrid_search(store: Store, query: str, vector: list[float], k: int, *,
                  source: str | None = None, since: datetime | None = None,
                  until: datetime | None = None) -> list[Hit]:
    where = _where(source, since, until)
    depth = max(k * 4, 20)
    lists: list[list[Hit]] = []
    for table in ("events", "memories"):
        lists.append(store.vector_search(table, vector, depth, where))
        text = fts_query(query)
        if text:
            try:
                hits = store.text_search(table, text, depth, where)
                if hits:
                    floor = hits[0].score * FTS_RELATIVE_FLOOR
                    lists.append([h for h in hits if h.score >= floor])
            except (ValueError, RuntimeError, OSError) as exc:
                log.warning("full-text search failed for %r (%s); using vectors only", text, exc)
    fused: dict[str, float] = {}
    best: dict[str, Hit] = {}
    for hits in lists:
        for rank, hit in enumerate(hits):
            fused[hit.id] = fused.get(hit.id, 0.0) + 1.0 / (RRF_K + rank + 1)
            best.setdefault(hit.id, hit)
    ranked = sorted(fused, key=lambda i: fused[i], reverse=True)[:k]
    return [replace(best[i], score=round(fused[i], 6)) for i in ranked]
