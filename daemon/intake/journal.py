"""The intake journal: a SQLite (WAL) file where collectors' events land first.

An event batch and its collector's cursor commit in one transaction, so a crash between
them is impossible: after a restart the collector resumes from a cursor that matches
exactly what was stored. Event ids are stable hashes, so a replay inserts nothing twice.
Secrets are redacted (subject, title, text and attrs) before a row is written, in the
journal's own process: a pool of worker processes redacting large batches was measured
slower than this process alone, on a quiet box too (bench/README.md, Journal ingest).

Each event moves through stages: NEW (journaled) → INDEXED (in the LanceDB store,
searchable) → SUMMARIZED (part of a memory).

What the user forgets leaves a tombstone (its id only, no content): a collector that
reads the same history again, or a sync peer that still has the memory, cannot bring it
back.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from collectors.base import Batch, Event, attrs_json
from daemon.errors import RetryableError
from daemon.intake import redact as redaction
from daemon.intake.checkpointer import WRITER_LIMIT_PAGES, WalCheckpointer
from daemon.intake.tombstones import EVENT, MEMORY
from daemon.owners import owned_id
from daemon.sqlite_migrations import Migration, migrate, run_script

NEW, INDEXED, SUMMARIZED = 0, 1, 2
FRESH_SCAN_ROWS = 5_000  # new events a search reads before the worker has indexed them
log = logging.getLogger(__name__)


def _m1_events_and_cursors(db: sqlite3.Connection) -> None:
    run_script(
        db,
        """
        CREATE TABLE events (
            seq     INTEGER PRIMARY KEY AUTOINCREMENT,
            id      TEXT NOT NULL UNIQUE,
            ts      REAL NOT NULL,
            source  TEXT NOT NULL,
            kind    TEXT NOT NULL,
            subject TEXT NOT NULL,
            title   TEXT NOT NULL DEFAULT '',
            text    TEXT NOT NULL DEFAULT '',
            attrs   TEXT NOT NULL DEFAULT '{}',
            stage   INTEGER NOT NULL DEFAULT 0,
            added   REAL NOT NULL
        );
        CREATE INDEX events_stage ON events(stage, seq);
        CREATE INDEX events_ts ON events(ts);
        CREATE TABLE cursors (
            collector TEXT PRIMARY KEY,
            value     TEXT NOT NULL,
            updated   REAL NOT NULL
        );
        """
    )


def _m2_forgotten(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE forgotten (id TEXT PRIMARY KEY, kind TEXT NOT NULL, "
               "at REAL NOT NULL) WITHOUT ROWID")


def _m3_owner(db: sqlite3.Connection) -> None:
    # Whose ids the events carry ("": the collectors' ids, as before owner ids); the
    # journal rewrites them once when it is first opened with its owner (`_adopt`).
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO meta(key, value) VALUES ('owner', '')")


# Ordered migrations; PRAGMA user_version says how many have run. Append, never edit.
MIGRATIONS: list[Migration] = [_m1_events_and_cursors, _m2_forgotten, _m3_owner]
class JournalUnwritable(RetryableError):
    """The journal cannot be written now (disk full, read-only); retry when it can."""


def _unwritable(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return any(w in text for w in ("disk is full", "readonly", "read-only", "disk i/o error"))


def _row_event(row: sqlite3.Row) -> Event:
    return Event(id=row["id"], ts=datetime.fromtimestamp(row["ts"], UTC), source=row["source"],
                 kind=row["kind"], subject=row["subject"], title=row["title"], text=row["text"],
                 attrs=json.loads(row["attrs"]))


Redact = Callable[[str], str]


def event_row(redact: Redact | None, owner: str, now: float, ev: Event) -> tuple[object, ...]:
    """The journal row of one event: its id carrying the owner, subject, title, text and
    attrs redacted (memoryd's redaction scans the three fields in one trigger pass)."""
    eid = owned_id(owner, ev.id) if owner else ev.id
    subject, title, text, attrs = ev.subject, ev.title, ev.text, ev.attrs
    if redact is None:
        return (eid, ev.ts.timestamp(), ev.source, ev.kind, subject, title, text,
                attrs_json(attrs), now)
    if redact is redaction.redact:
        subject, title, text = redaction.redact_each([subject, title, text])
    else:
        subject, title, text = redact(subject), redact(title), redact(text)
    return (eid, ev.ts.timestamp(), ev.source, ev.kind, subject, title, text,
            attrs_json(redaction.redact_attrs(attrs, redact)) if attrs else "{}", now)


def event_rows(redact: Redact | None, owner: str, now: float,
               events: list[Event]) -> list[tuple[object, ...]]:
    """The journal rows of a batch of events: with memoryd's redaction, the subjects,
    titles and texts of the whole batch are redacted in one pass."""
    if redact is not redaction.redact or len(events) < 2:
        return [event_row(redact, owner, now, e) for e in events]
    fields = redaction.redact_batch([f for e in events for f in (e.subject, e.title, e.text)])
    rows: list[tuple[object, ...]] = []
    for k, ev in enumerate(events):
        eid = owned_id(owner, ev.id) if owner else ev.id
        rows.append((eid, ev.ts.timestamp(), ev.source, ev.kind, *fields[3 * k:3 * k + 3],
                     attrs_json(redaction.redact_attrs(ev.attrs)) if ev.attrs else "{}",
                     now))
    return rows


class Journal:
    """The durable queue between collectors and the memory pipeline. Thread-safe."""

    owner = ""

    def __init__(self, path: Path, redact: Redact | None = None, owner: str = "") -> None:
        """`owner` (daemon.owners.owner_key, "user@device") enters every event id the
        journal stores, so one device's rows never replace another's in a shared store;
        "" keeps the collectors' ids (a journal only read, or a test of one collector)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._redact = redact
        self.owner = owner
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, timeout=30, check_same_thread=False,
                                   isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL survives any process crash; after a power cut the last commits may go,
        # but then their cursors go with them and the collectors read those events again.
        self._db.execute("PRAGMA synchronous=NORMAL")
        # the log is copied into the file by a thread of its own (checkpointer.py)
        self._db.execute(f"PRAGMA wal_autocheckpoint={WRITER_LIMIT_PAGES}")
        self.checkpointer = WalCheckpointer(path)
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            migrate(self._db, MIGRATIONS, "the journal")
            if self.owner:
                self._adopt(self.owner)

    def _adopt(self, owner: str) -> None:
        """Give the events of a journal written before owner ids (or under another
        owner name) ids carrying `owner`, in one transaction: the store migrates its rows
        with the same function (daemon/store/owner_ids.py), so both keep agreeing. Every
        tombstone stays and gains its owned twin: nothing forgotten comes back."""
        with self._writing("give events their owner's ids"):
            had = self._db.execute("SELECT value FROM meta WHERE key='owner'").fetchone()[0]
            if had == owner:
                return
            if had:  # a renamed device or user: its old rows keep the old name's ids
                log.warning("the journal was written as %s, the config now says %s: new "
                            "events get %s's ids", had, owner, owner)
            else:
                ids = [r[0] for r in self._db.execute("SELECT id FROM events")]
                self._db.executemany("UPDATE events SET id=? WHERE id=?",
                                     [(owned_id(owner, i), i) for i in ids])
                dead = self._db.execute("SELECT id, at FROM forgotten WHERE kind=?",
                                        (EVENT,)).fetchall()
                self._db.executemany(
                    "INSERT OR IGNORE INTO forgotten(id, kind, at) VALUES (?,?,?)",
                    [(owned_id(owner, i), EVENT, at) for i, at in dead])
                if ids or dead:
                    log.warning("gave the journal's %d events and %d tombstones ids that "
                                "carry their owner %s", len(ids), len(dead), owner)
            self._db.execute("UPDATE meta SET value=? WHERE key='owner'", (owner,))

    def close(self) -> None:
        self.checkpointer.close()
        with self._lock:
            self._db.close()

    def _rows(self, events: list[Event], now: float) -> list[tuple[object, ...]]:
        return event_rows(self._redact, self.owner, now, events)

    def append(self, batch: Batch) -> int:
        """Store the batch's events and cursor atomically; return how many events were new."""
        now = time.time()
        rows = self._rows(batch.events, now)
        with self._lock, self._writing("store new events"):
            before = self._db.total_changes
            if self._db.execute("SELECT 1 FROM forgotten LIMIT 1").fetchone():
                self._db.executemany(
                    "INSERT OR IGNORE INTO events(id, ts, source, kind, subject, title, text,"
                    " attrs, added) SELECT ?,?,?,?,?,?,?,?,? WHERE NOT EXISTS"
                    " (SELECT 1 FROM forgotten WHERE id = ?)", [(*r, r[0]) for r in rows])
            else:  # nothing forgotten (asked inside the write transaction): no lookups
                self._db.executemany(
                    "INSERT OR IGNORE INTO events(id, ts, source, kind, subject, title, text,"
                    " attrs, added) VALUES (?,?,?,?,?,?,?,?,?)", rows)
            new = self._db.total_changes - before
            if batch.cursor is not None:
                self._db.execute(
                    "INSERT INTO cursors(collector, value, updated) VALUES (?,?,?) "
                    "ON CONFLICT(collector) DO UPDATE SET value=excluded.value,"
                    " updated=excluded.updated", (batch.collector, batch.cursor, now))
        return new

    @contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """One write transaction: committed whole or rolled back whole.

        A full disk or a read-only data dir becomes a `JournalUnwritable` that says so:
        nothing of the transaction is kept (the collector's cursor did not move, so the
        same events are read again once the journal can be written).
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
            self.checkpointer.written()
        except BaseException as exc:
            if self._db.in_transaction:  # SQLite may have rolled back already
                self._db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError) and _unwritable(exc):
                raise JournalUnwritable(
                    f"cannot {what}: {exc} ({self.path}); free space or make the data dir "
                    "writable, and memoryd carries on where it stopped") from exc
            raise

    def cursor(self, collector: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM cursors WHERE collector=?",
                                   (collector,)).fetchone()
        return row[0] if row else None

    def stored_id(self, event_id: str) -> str:
        """The id the journal (and the store) keep for a collector's event id."""
        return owned_id(self.owner, event_id)

    def known(self, ids: list[str]) -> set[str]:
        """Which of the collectors' `ids` the journal holds."""
        mine = {self.stored_id(i): i for i in ids}
        stored = list(mine)
        found: set[str] = set()
        with self._lock:
            for i in range(0, len(stored), 500):
                part = stored[i:i + 500]
                marks = ",".join("?" * len(part))
                found.update(mine[r[0]] for r in self._db.execute(
                    f"SELECT id FROM events WHERE id IN ({marks})", part))
        return found

    def at_stage(self, stage: int, limit: int, newest: bool = False) -> list[Event]:
        """Return up to `limit` events at `stage`, oldest journaled first (`newest`: the
        latest by event time first)."""
        order = "ts DESC" if newest else "seq"
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM events WHERE stage=? ORDER BY {order} LIMIT ?",
                (stage, limit)).fetchall()
        return [_row_event(r) for r in rows]

    def new_matching(self, words: list[str], limit: int, source: str | None = None,
                     since: datetime | None = None, until: datetime | None = None,
                     kind: str | None = None) -> list[Event]:
        """Up to `limit` events not yet indexed (NEW) whose subject, title or text holds
        every one of `words` (lower-case), newest first: what a search finds before the
        worker has stored them (daemon/recall/fresh.py). Reads only NEW rows (an index),
        the newest FRESH_SCAN_ROWS journaled: a backfill's oldest wait for the worker."""
        conds: list[str] = []
        args: list[object] = []
        for w in words:  # LIKE ignores ASCII case without a lowered copy of each text
            like = "%" + w.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            conds.append("(subject LIKE ? ESCAPE '\\' OR title LIKE ? ESCAPE '\\' OR "
                         "text LIKE ? ESCAPE '\\')")
            args += [like, like, like]
        for cond, value in (("source = ?", source), ("kind = ?", kind),
                            ("ts >= ?", since.timestamp() if since else None),
                            ("ts < ?", until.timestamp() if until else None)):
            if value is not None:
                conds.append(cond)
                args.append(value)
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM (SELECT * FROM events WHERE stage = ? ORDER BY seq DESC "
                f"LIMIT ?) WHERE {' AND '.join(conds) or '1'} ORDER BY ts DESC LIMIT ?",
                [NEW, FRESH_SCAN_ROWS, *args, limit]).fetchall()
        return [_row_event(r) for r in rows]

    def by_ids(self, ids: Iterable[str]) -> list[Event]:
        ids = list(ids)
        out: list[Event] = []
        with self._lock:
            for i in range(0, len(ids), 500):
                part = ids[i:i + 500]
                marks = ",".join("?" * len(part))
                out.extend(_row_event(r) for r in self._db.execute(
                    f"SELECT * FROM events WHERE id IN ({marks}) ORDER BY ts", part))
        return out

    def advance(self, ids: Iterable[str], stage: int) -> None:
        """Move events forward to `stage` (never backwards)."""
        ids = list(ids)
        with self._lock, self._writing("mark events processed"):
            for i in range(0, len(ids), 500):
                part = ids[i:i + 500]
                marks = ",".join("?" * len(part))
                self._db.execute(
                    f"UPDATE events SET stage=? WHERE stage<? AND id IN ({marks})",
                    [stage, stage, *part])

    def forget(self, ids: Iterable[str] = (), since: datetime | None = None,
               until: datetime | None = None, source: str | None = None,
               query: str | None = None, memory_ids: Iterable[str] = ()) -> int:
        """Delete the events with `ids`, and those matching every condition given (time in
        [since, until), `source`, `query` as a case-insensitive substring of subject,
        title or text); return how many rows went. No condition deletes only `ids`.

        Every deleted event id, and every id in `memory_ids` (the memories the store
        dropped), is kept as a tombstone so it is never stored again."""
        ids = list(ids)
        now = time.time()
        conds: list[str] = []
        args: list[object] = []
        if since is not None:
            conds.append("ts >= ?")
            args.append(since.timestamp())
        if until is not None:
            conds.append("ts < ?")
            args.append(until.timestamp())
        if source:
            conds.append("source = ?")
            args.append(source)
        if query and query.strip():
            like = "%" + query.strip().lower().replace("\\", "\\\\").replace(
                "%", "\\%").replace("_", "\\_") + "%"
            conds.append("(lower(subject) LIKE ? ESCAPE '\\' OR lower(title) LIKE ? ESCAPE "
                         "'\\' OR lower(text) LIKE ? ESCAPE '\\')")
            args += [like, like, like]
        with self._lock:
            # Overwrite deleted rows' bytes too, and empty the WAL after: forget means gone
            # from the file, not only from queries.
            self._db.execute("PRAGMA secure_delete=ON")
            with self._writing("forget events"):
                if conds:
                    self._db.execute(
                        "INSERT OR IGNORE INTO forgotten(id, kind, at) SELECT id, ?, ? FROM "
                        f"events WHERE {' AND '.join(conds)}", [EVENT, now, *args])
                self._db.executemany(
                    "INSERT OR IGNORE INTO forgotten(id, kind, at) VALUES (?,?,?)",
                    [(i, EVENT, now) for i in ids] + [(m, MEMORY, now) for m in memory_ids])
                before = self._db.total_changes
                if conds:
                    self._db.execute(f"DELETE FROM events WHERE {' AND '.join(conds)}", args)
                for i in range(0, len(ids), 500):
                    part = ids[i:i + 500]
                    self._db.execute(
                        f"DELETE FROM events WHERE id IN ({','.join('?' * len(part))})", part)
                gone = self._db.total_changes - before
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return gone

    def forgotten_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM forgotten").fetchone()[0])

    def more_than(self, stage: int, n: int) -> bool:
        """Whether more than `n` events are at `stage` (reads at most n + 1 index rows)."""
        with self._lock:
            return bool(self._db.execute("SELECT COUNT(*) > ? FROM (SELECT 1 FROM events "
                                         "WHERE stage=? LIMIT ?)", (n, stage, n + 1)).fetchone()[0])

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = dict(self._db.execute("SELECT stage, COUNT(*) FROM events GROUP BY stage")
                        .fetchall())
        return {"new": rows.get(NEW, 0), "indexed": rows.get(INDEXED, 0),
                "summarized": rows.get(SUMMARIZED, 0), "total": sum(rows.values())}

    def cursors(self) -> dict[str, dict[str, object]]:
        with self._lock:
            rows = self._db.execute("SELECT collector, value, updated FROM cursors").fetchall()
        return {r[0]: {"value": r[1], "updated": datetime.fromtimestamp(r[2], UTC).isoformat()}
                for r in rows}
