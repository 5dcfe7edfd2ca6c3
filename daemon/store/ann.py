"""The vector (ANN) index of `events` and `memories`: built once a table has
`[search] ann_min_rows` rows, kept current by optimize, retrained when the table has
grown well past the size it was trained on.

Below the threshold a flat scan is exact and fast enough (bench/ann_choice.py: ~22 ms at
10k rows on the 2-core box, ~350 ms at 100k). Past it the store builds an IVF_SQ index
(partitions of ~sqrt(rows) rows each, one byte per dimension: 7 s to build at 100k where
IVF_PQ took 444 s) and searches it probing NPROBES partitions, re-ranking the candidates on the full
vectors (refine): the quantized distances only choose candidates, so recall holds on
tight clusters of near-copies they alone cannot tell apart. Filters are applied before
the search (prefilter), so a filtered search returns only matching rows; rows added
since the last optimize are searched by a flat scan beside the index.

It runs inside the store's optimize (the worker, under the store's write lock, after the
new rows are folded in); searches read from the resident reader and never wait for it.
Two daemons on one bucket may both decide to build: the index has one fixed name and is
created with replace=False, so the loser's "already exists" is retried, finds the
winner's index and counts as done (daemon/store/retry.py).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from daemon.store.retry import retrying

log = logging.getLogger(__name__)

INDEX_NAME = "vector_idx"
ROWS_KEY = "memoryd.ann_rows"  # vector field metadata: rows the index was trained on
# ... and how its partitions were sized. An index given only `num_partitions` (before
# this key) is merged back to a handful of partitions by the next optimize (Lance keeps
# a target partition size, not a count: 316 partitions at 100k became 4, and a search
# compared the query with every row); one without the key is rebuilt once.
LAYOUT_KEY = "memoryd.ann_layout"
LAYOUT = "target-size"
REBUILD_GROWTH = 4.0  # retrain (new partitions) once the table has this many times those
MAX_PARTITIONS = 4096  # IVF partitions: sqrt(rows), 316 at 100k, 1,000 at 1M
# How searches use the index (chosen with bench/ann_choice.py): partitions probed, and
# candidates re-ranked on full vectors: REFINE_FACTOR x k, at most REFINE_MAX in all (a
# hybrid search asks for 50 per list, whose tail needs less precision than a top 10).
NPROBES = 20
REFINE_FACTOR = 10
REFINE_MAX = 200


def vector_index(table: Any) -> Any | None:
    """The table's index on `vector` (a lancedb IndexConfig), or None."""
    for idx in table.list_indices():
        if "vector" in (getattr(idx, "columns", None) or ()):
            return idx
    return None


def partitions(rows: int) -> int:
    return max(1, min(MAX_PARTITIONS, round(math.sqrt(rows))))


def partition_size(rows: int) -> int:
    """Rows per partition for `partitions(rows)` partitions (~sqrt(rows))."""
    return max(1, math.ceil(rows / partitions(rows)))


def index_config(rows: int) -> Any:
    """IVF_SQ: each vector kept as one byte per dimension in ~sqrt(rows) partitions,
    given as a partition size, which optimize keeps (see LAYOUT_KEY)."""
    from lancedb.index import IvfSq

    return IvfSq(distance_type="cosine", target_partition_size=partition_size(rows))


def current_layout(table: Any) -> bool:
    """Whether the index was built with partitions that optimize keeps."""
    meta = table.schema.field("vector").metadata or {}
    return meta.get(LAYOUT_KEY.encode()) == LAYOUT.encode()


def trained_rows(table: Any) -> int:
    """Rows the current index was trained on (0 when it does not say)."""
    meta = table.schema.field("vector").metadata or {}
    try:
        return int(meta.get(ROWS_KEY.encode(), b"0"))
    except ValueError:
        return 0


def refresh(table: Any, min_rows: int, location: str) -> str:
    """`maintain`, for the store's optimize: the rows are already committed, so a build
    that fails is logged and tried again at the next optimize (searches meanwhile use
    the index as it was, or a flat scan), never failing the write that triggered it."""
    try:
        return maintain(table, min_rows, location)
    except Exception as exc:
        log.warning("building the vector index of the %s table at %s failed (%s); "
                    "vector search stays as it was (a flat scan is exact, only slower) "
                    "and the next optimize tries again", table.name, location,
                    str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__)
        return "failed"


def maintain(table: Any, min_rows: int, location: str) -> str:
    """Build the vector index of `table` when it has `min_rows` rows and none yet, or
    rebuild it when the table has grown REBUILD_GROWTH times past what it was trained
    on, or when it was built by a memoryd whose partitions optimize merged (LAYOUT_KEY);
    return what happened: "below", "kept", "built", "rebuilt" or "found" (another
    daemon built it meanwhile). `min_rows` <= 0 turns the index off (flat search)."""
    if min_rows <= 0:
        return "below"
    idx = vector_index(table)
    rows = int(table.count_rows())
    if idx is None:
        return "below" if rows < min_rows else build(table, rows, location, replace=False)
    trained = trained_rows(table) or int(getattr(idx, "num_indexed_rows", 0) or rows)
    if rows >= REBUILD_GROWTH * max(trained, min_rows) or not current_layout(table):
        return build(table, rows, location, replace=True)
    return "kept"


def build(table: Any, rows: int, location: str, replace: bool) -> str:
    """Create (or, with `replace`, retrain) the index; idempotent across daemons."""
    began = time.monotonic()

    def attempt() -> str:
        idx = vector_index(table)
        if idx is not None and (not replace or (
                current_layout(table) and trained_rows(table) * REBUILD_GROWTH > rows)):
            return "found"  # another daemon's (re)build landed first
        table.create_index("vector", config=index_config(rows), replace=replace,
                           name=INDEX_NAME)
        return "rebuilt" if replace else "built"

    done = retrying("index creation", attempt, where=location,
                    refresh=table.checkout_latest, also=("already exists",))
    if done == "found":
        log.info("the %s table's vector index was built by another writer", table.name)
        return done
    retrying("index creation", lambda: table.update_field_metadata(
        {"path": "vector", "metadata": {ROWS_KEY: str(rows), LAYOUT_KEY: LAYOUT}}),
        where=location, refresh=table.checkout_latest)
    log.info("%s the vector index of the %s table at %s: IVF_SQ, ~%d partitions of %d "
             "rows over %d rows, in %.1f s", done, table.name, location, partitions(rows),
             partition_size(rows), rows, time.monotonic() - began)
    return done


def tuned(query: Any, k: int) -> Any:
    """A vector query for `k` rows set to search the index as chosen (a flat scan, on a
    table without one, ignores both settings)."""
    refine = max(2, min(REFINE_FACTOR, REFINE_MAX // max(k, 1)))
    return query.nprobes(NPROBES).refine_factor(refine)

