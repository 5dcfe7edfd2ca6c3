"""Atuin's history database (~/.local/share/atuin/history.db or ~/.atuin/data/history.db).

Its `history` table holds one row per command: `timestamp` and `duration` in
nanoseconds, `exit`, `command`, `cwd`, `session`, `hostname` (and, in newer atuin,
`shell`). Atuin inserts the row when the command starts (duration and exit -1) and
fills them in when it ends, so a running command is held back until then. The
database is only ever opened read-only; when that fails (locked, or a WAL database
whose -shm we may not create) a copy of the database and its -wal is read instead.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from collectors.histfile import Entry

SQLITE_MAGIC = b"SQLite format 3\x00"
MAX_PENDING = 1000
COLUMNS = ("id", "timestamp", "duration", "exit", "command", "cwd", "session", "hostname")


class NotAtuin(Exception):
    """The file is an SQLite database, but not atuin's history."""


@contextmanager
def readonly(path: Path, timeout: float = 0.5) -> Iterator[sqlite3.Connection]:
    """Open the database at `path` without ever writing to it; raise sqlite3.DatabaseError
    if it is not a database at all."""
    db = _open_ro(path, timeout)
    if db is None:
        with tempfile.TemporaryDirectory(prefix="memoryd-atuin-") as tmp:
            db = _copy(path, Path(tmp))
            try:
                yield db
            finally:
                db.close()
        return
    try:
        yield db
    finally:
        db.close()


def _open_ro(path: Path, timeout: float) -> sqlite3.Connection | None:
    db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=timeout)
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:  # locked, or cannot open the WAL read-only
        db.close()
        return None
    except BaseException:
        db.close()
        raise
    return db


def _copy(path: Path, tmp: Path) -> sqlite3.Connection:
    # the -wal holds recent commits that are not in the main file yet; -shm is rebuilt
    for suffix in ("", "-wal"):
        src = path.with_name(path.name + suffix)
        if src.exists():
            shutil.copyfile(src, tmp / ("history.db" + suffix))
    db = sqlite3.connect(tmp / "history.db")
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except BaseException:
        db.close()
        raise
    return db


def read(path: Path, state: dict[str, Any], now: float, pending_max_age: float,
         limit: int = 1000, recheck: bool = True) -> tuple[list[Entry], dict[str, Any], bool]:
    """Given the state after the last read, return up to `limit` commands that finished
    since, the new state (the highest row read, by rowid and atuin id so a rebuilt
    database is noticed, and the rows still running) and whether more rows wait.
    `recheck` looks at the rows that were still running last time (once per poll)."""
    with readonly(path) as db:
        cols = {r[1] for r in db.execute("PRAGMA table_info(history)")}
        if not set(COLUMNS) <= cols:
            raise NotAtuin(f"{path} is an SQLite database without atuin's history table")
        names = ["rowid", *COLUMNS, *(c for c in ("deleted_at", "shell") if c in cols)]
        select = f"SELECT {', '.join(names)} FROM history"
        last = int(state.get("rowid", 0))
        pending = [int(r) for r in state.get("pending", [])]
        if last:
            row = db.execute("SELECT id FROM history WHERE rowid=?", (last,)).fetchone()
            if row is None or row[0] != state.get("id"):
                last, pending = 0, []  # rebuilt or replaced: read it all; ids dedupe
        carried, rows = ([], []) if recheck else (pending, [])
        if recheck and pending:
            marks = ",".join("?" * len(pending))
            rows = db.execute(f"{select} WHERE rowid IN ({marks}) ORDER BY rowid",
                              pending).fetchall()
        page = db.execute(f"{select} WHERE rowid > ? ORDER BY rowid LIMIT ?",
                          (last, limit)).fetchall()
        out: list[Entry] = []
        still: list[int] = []
        top, top_id = last, state.get("id", "") if last else ""
        for values in rows + page:
            r = dict(zip(names, values, strict=True))
            if r["rowid"] > top:
                top, top_id = r["rowid"], r["id"]
            if r.get("deleted_at") is not None:
                continue  # the user deleted it from their history: respect that
            running = r["duration"] is None or r["duration"] < 0
            if running and not _given_up(db, r, now, pending_max_age):
                still.append(r["rowid"])
                continue
            out.append(_entry(r, running))
    new = {"rowid": top, "id": top_id, "pending": (carried + still)[-MAX_PENDING:]}
    return out, new, len(page) == limit


def _given_up(db: sqlite3.Connection, r: dict[str, Any], now: float, max_age: float) -> bool:
    """A row that never got its end: its session went on to a later command (so it did
    end, the end was lost), or it is older than `max_age` seconds."""
    if now - r["timestamp"] / 1e9 > max_age:
        return True
    return db.execute("SELECT 1 FROM history WHERE session=? AND timestamp>? LIMIT 1",
                      (r["session"], r["timestamp"])).fetchone() is not None


def _entry(r: dict[str, Any], running: bool) -> Entry:
    attrs: dict[str, object] = {"cwd": r["cwd"], "session": r["session"],
                                "hostname": r["hostname"]}
    if not running:
        attrs["exit"] = r["exit"]
        attrs["duration_ms"] = r["duration"] // 1_000_000
    if r.get("shell"):
        attrs["atuin_shell"] = r["shell"]
    return Entry(r["command"], r["timestamp"] / 1e9, attrs=attrs, key=f"atuin:{r['id']}")
