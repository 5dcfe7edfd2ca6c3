"""The journal's tombstones read by a process that does not own the journal: the worker
merging a sync peer's memories, or re-checking an index or summary batch just after its
store commit. What the user forgets leaves a tombstone (its id only, no content) in the
journal's `forgotten` table (daemon/intake/journal.py writes them)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

EVENT, MEMORY = "event", "memory"  # what a tombstone stands for


def read_forgotten(path: Path) -> tuple[frozenset[str], frozenset[str]]:
    """The forgotten (event ids, memory ids) in the journal at `path`, read-only, for a
    process that does not own the journal (the worker merging a sync peer's memories)."""
    if not path.exists():
        return frozenset(), frozenset()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        rows = db.execute("SELECT id, kind FROM forgotten").fetchall()
    except sqlite3.OperationalError:  # a journal from before tombstones: nothing forgotten
        return frozenset(), frozenset()
    finally:
        db.close()
    return (frozenset(i for i, k in rows if k == EVENT),
            frozenset(i for i, k in rows if k == MEMORY))


def forgotten_among(path: Path, ids: Iterable[str]) -> set[str]:
    """Which of `ids` the journal at `path` holds tombstones for (read-only, for the
    worker: an index or summary step re-checks its batch just after its store commit)."""
    ids = list(ids)
    if not ids or not path.exists():
        return set()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    found: set[str] = set()
    try:
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            found.update(r[0] for r in db.execute(
                f"SELECT id FROM forgotten WHERE id IN ({','.join('?' * len(part))})", part))
    except sqlite3.OperationalError:  # a journal from before tombstones
        return set()
    finally:
        db.close()
    return found
