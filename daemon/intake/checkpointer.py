"""The journal's write-ahead log copied into its database file beside the writer.

SQLite checkpoints a WAL database on the commit that takes the log past its
`wal_autocheckpoint` limit: that commit copies the log into the file and syncs it, a
quarter of what the journal's own SQLite work costs in a backfill (bench/README.md,
Journal ingest). The journal gives its writer a far higher limit, kept only as a backstop,
and this thread checkpoints on a connection of its own shortly after writes, so the copy
runs on the other core while the writer goes on.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)

# The writer's own limit (pages of 4 KiB): reached only if this thread falls behind.
WRITER_LIMIT_PAGES = 16_384
SETTLE_SECONDS = 2.0  # after a write, wait this long for more before copying


class WalCheckpointer:
    """Checkpoints the WAL of the SQLite file at `path` after `written()` is called."""

    def __init__(self, path: Path, settle: float = SETTLE_SECONDS) -> None:
        self.path = path
        self.settle = settle
        self.checkpoints = 0  # how many ran (for tests and status)
        self._wrote = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._writes = 0

    def written(self) -> None:
        """A transaction was committed: checkpoint soon."""
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="journal-checkpoint")
                self._thread.start()
            self._writes += 1
            self._idle.clear()
        self._wrote.set()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every write so far is checkpointed (or `timeout` passes)."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        self._stop.set()
        self._wrote.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                             check_same_thread=False)
        try:
            while not self._stop.is_set():
                self._wrote.wait()
                if self._stop.wait(self.settle):
                    break
                with self._lock:
                    seen = self._writes
                    self._wrote.clear()
                self._checkpoint(db)
                with self._lock:
                    if self._writes == seen:
                        self._idle.set()
        finally:
            db.close()
            self._idle.set()

    def _checkpoint(self, db: sqlite3.Connection) -> None:
        try:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.checkpoints += 1
        except sqlite3.Error as exc:  # the writer's backstop limit still checkpoints
            log.debug("journal checkpoint of %s skipped: %s", self.path, exc)
