"""Seeing the worker's commits from the reader, one directory look-up per table.

The resident reader (daemon/store/reader.py) serves searches from a local store the
worker writes. LanceDB can ask for the latest version before every read
(`read_consistency_interval` 0), but a search makes a dozen reads (each query, and the
schema look-ups LanceDB does for each): ~4 ms of a warm search went there. A commit adds
a manifest to the table's `_versions` folder, which changes the folder's modification
time; the reader checks that before each call and checks out the latest version only
when it changed.

File times tick coarsely (a few ms), so two commits inside one tick can leave the same
time: a time younger than `RACY_NS` is not trusted, and the next call checks out again
(as git does with its index). Without a `_versions` folder (another layout, a bucket),
every call checks out.

It also tells when a table's indexes were rewritten (its `_indices` folder changed: the
worker's optimize folds new rows into the full-text and vector indexes, under new ids):
LanceDB's caches keep the old ones until they fill up (`[store] cache_mb`), so the
reader then opens the store afresh (daemon/store/reader.py): in a backfill its caches
filled with superseded indexes, 77 -> 230 MB of its own memory (bench/README.md).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
RACY_NS = 50_000_000  # a folder time this recent may hide a commit in the same tick


class CommitWatch:
    """Check out a table's latest version when another process committed to it."""

    def __init__(self, location: str | Path) -> None:
        self.root = Path(location)
        self._seen: dict[str, int] = {}  # table -> the folder time last checked out at
        self._indexes: dict[str, int | None] = {}  # table -> its `_indices` folder time
        self.checkouts = 0
        self.indexes_changed = False  # set by `refresh`, cleared by whoever acts on it

    def refresh(self, tables: dict[str, Any]) -> int:
        """Bring each of `tables` (name -> LanceDB table) to its latest version if it may
        have moved since the last call; return how many were checked out."""
        moved = 0
        for name, table in tables.items():
            stamp = self._stamp(name)
            if stamp is not None and self._seen.get(name) == stamp:
                continue
            table.checkout_latest()
            moved += 1
            indexes = self._stamp(name, "_indices")
            if self._indexes.setdefault(name, indexes) != indexes:
                self._indexes[name] = indexes
                self.indexes_changed = True
            if stamp is not None and time.time_ns() - stamp > RACY_NS:
                self._seen[name] = stamp
            else:
                self._seen.pop(name, None)
        self.checkouts += moved
        return moved

    def _stamp(self, name: str, folder: str = "_versions") -> int | None:
        try:
            return os.stat(self.root / f"{name}.lance" / folder).st_mtime_ns
        except OSError:
            return None
