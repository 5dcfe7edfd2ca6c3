"""A search's LanceDB queries, started on LanceDB's own event loop so they run side by side.

LanceDB's synchronous query builder is a layer over its async one that re-reads the
table's schema five times a query (for blob columns memoryd does not have) and hands
each step to LanceDB's event loop thread and back: ~6 ms of a warm hybrid search's four
queries on this box's 2 cores went there, more than the queries themselves on a small
store. Here each query is built with the async API and started on that same loop at once
(`asyncio.run_coroutine_threadsafe`); the caller gets a `Future` of hits and can embed
the query, or start the next query, while LanceDB works. The results are those of the
synchronous builder (tests/daemon/recall/test_search_fast_path.py compares them).

Only daemon/store/lance.py calls these, with its own tables.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from typing import Any

import numpy as np
import pyarrow as pa

from daemon.recall.hits import Hit
from daemon.store import ann
from daemon.store.hitrows import hit


def vector(table: Any, name: str, vec: list[float], k: int, where: str | None,
           columns: list[str]) -> Future[list[Hit]]:
    """The `k` rows of `table` (a LanceDB table named `name`) nearest `vec` by cosine,
    filtered by `where` before the search, as hits scored 1 - distance."""
    # as float32 Arrow, the column's type: LanceDB turns a list into float64 Arrow one
    # Python float at a time (~1 ms a query) and casts it back
    query = pa.array(np.asarray(vec, dtype=np.float32))
    q = ann.tuned(_native(table).query().nearest_to(query).distance_type("cosine").limit(k), k)
    if where:
        q = q.where(where)  # the async API filters before the search unless told otherwise
    return _start(_hits(q.select([*columns, "_distance"]), name, "_distance"))


def text(table: Any, name: str, query: str, k: int, where: str | None,
         columns: list[str]) -> Future[list[Hit]]:
    """The `k` best full-text matches of `query` in `table`'s `doc`, filtered by `where`
    before the search, as hits scored by BM25."""
    q = _native(table).query().nearest_to_text(query, columns="doc").limit(k)
    if where:
        q = q.where(where)
    return _start(_hits(q.select([*columns, "_score"]), name, "_score"))


async def _hits(query: Any, name: str, score: str) -> list[Hit]:
    rows = (await query.to_arrow()).to_pylist()
    if score == "_distance":
        return [hit(name, r, 1.0 - float(r[score])) for r in rows]
    return [hit(name, r, float(r[score])) for r in rows]


def _native(table: Any) -> Any:
    """The async table under a synchronous LanceDB table (the same handle, version and
    caches: a checkout on one is a checkout on the other)."""
    return table._table


def _start(coro: Any) -> Future[list[Hit]]:
    from lancedb.background_loop import LOOP  # the loop LanceDB's tables run on (imported
    # by daemon/store/lance.py through daemon/store/lancedb_lean.py before any table exists)

    return asyncio.run_coroutine_threadsafe(coro, LOOP.loop)
