"""The one place store writes survive Lance commit conflicts.

Lance commits a table version optimistically: a writer that finds another's commit at
the version it meant to write rebases and tries again a few times, then gives up with
"preempted by concurrent transaction", "Retryable commit conflict" or the like. Several
daemons on one bucket (or two threads of one worker) meet that whenever they write at the
same moment: creating the tables, building the first indexes, upserting, deleting,
optimizing, cleaning up old versions, migrating the schema. Every such write in
daemon/store/ goes through `retrying`: it re-reads the table and tries again after a
jittered, growing pause, and when conflicts go on past its budget it raises
`StoreConflict` (retryable), so the caller leaves the journal as it was and the
scheduler tries the batch again later.

Conflicts retried are counted per write path (`conflict_counts`, shown in the engine's
status and logged), which is how a team on one bucket can see how contended it is.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from daemon import backoff
from daemon.errors import StoreConflict

log = logging.getLogger(__name__)
T = TypeVar("T")

# How Lance (and the object store under it) words a commit that lost a race; lowercase.
CONFLICT_WORDS = (
    "preempted by concurrent transaction", "retryable commit conflict", "commit conflict",
    "incompatible transaction", "too many concurrent writers", "conflicting transaction",
    "concurrent modification",
)
# A file of a table version another writer's cleanup has just removed, read through a
# handle that still points at that version: re-reading the table finds the newest one.
_CLEANED_UP = re.compile(r"not found: .*\.lance/(_deletions|data|_indices|_versions|"
                         r"_transactions)/")
ATTEMPTS = 10  # tries in all before StoreConflict
BASE_SECONDS = 0.05  # first pause (before jitter); doubles each try
CAP_SECONDS = 3.0  # longest pause

_counts: dict[str, int] = {}
_gave_up: dict[str, int] = {}
_counts_lock = threading.Lock()


def is_conflict(exc: BaseException, extra: tuple[str, ...] = ()) -> bool:
    """Whether `exc` is a commit that lost to a concurrent one, or a read of a version
    another writer's cleanup removed meanwhile (both worth retrying on a fresh read)."""
    text = str(exc).lower()
    return any(w in text for w in CONFLICT_WORDS + extra) or bool(_CLEANED_UP.search(text))


def conflict_counts() -> dict[str, dict[str, int]]:
    """Conflicts retried per write path since this process started, and how many writes
    gave up after all their tries: {"upsert": {"retried": 3, "gave_up": 0}, ...}."""
    with _counts_lock:
        return {p: {"retried": _counts.get(p, 0), "gave_up": _gave_up.get(p, 0)}
                for p in sorted(set(_counts) | set(_gave_up))}


def count(path: str) -> int:
    """Count one event on `path` that is not a retry (e.g. duplicates removed)."""
    return _count(_counts, path)


def _count(table: dict[str, int], path: str) -> int:
    with _counts_lock:
        table[path] = table.get(path, 0) + 1
        return table[path]


def retrying(path: str, write: Callable[[], T], *, where: str = "",
             refresh: Callable[[], object] | None = None,
             also: tuple[str, ...] = (), attempts: int = ATTEMPTS) -> T:
    """Run `write` (one store commit, path named for the counters and messages), retrying
    a commit conflict with jittered exponential backoff; `refresh` runs before each retry
    (re-read the table so the next try starts from the newest version); `also` adds
    words that count as a conflict on this path (a table another daemon just created).
    Any other error is raised as it is."""
    for attempt in range(1, attempts + 1):
        try:
            return write()
        except Exception as exc:
            if not is_conflict(exc, also):
                raise
            if attempt == attempts:
                _count(_gave_up, path)
                raise StoreConflict(
                    f"the store at {where or 'its location'} kept changing under this "
                    f"daemon's {path} ({attempts} tries lost to other writers' commits: "
                    f"{str(exc).splitlines()[0][:200]}). Nothing was committed; the work "
                    "stays queued and is tried again shortly") from exc
            n = _count(_counts, path)
            pause = backoff.delay(BASE_SECONDS, attempt, CAP_SECONDS, random.random)
            log.info("store commit conflict on %s (try %d, %d retried on this path so far): "
                     "%s; retrying in %.2f s", path, attempt, n,
                     str(exc).splitlines()[0][:160], pause)
            time.sleep(pause)
            if refresh is not None:
                try:
                    refresh()
                except Exception as again:  # the next try reports what is really wrong
                    log.debug("re-reading the table before a retry failed: %s", again)
    raise AssertionError("unreachable")  # pragma: no cover
