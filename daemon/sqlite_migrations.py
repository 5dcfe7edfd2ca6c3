"""Numbered schema migrations for every SQLite file memoryd keeps (the journal, routing
telemetry, approvals, sync state).

A file's `PRAGMA user_version` counts the migrations it has had. Each migration is a small
named function, run in its own write transaction together with the version bump, so a
crash leaves the file at one version or the next, never in between; and two processes
opening one file at once run each migration once (the second sees the new version under
the write lock). Migrations are appended, never edited: a file written by any earlier
memoryd opens by running only the ones it has not had."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence

Migration = Callable[[sqlite3.Connection], None]
log = logging.getLogger(__name__)


def version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection, migrations: Sequence[Migration], name: str) -> int:
    """Bring the SQLite file behind `db` (called `name` in logs) up to date; return its
    schema version. Leaves `db` outside any transaction."""
    if db.in_transaction:
        db.commit()
    have = version(db)
    if have > len(migrations):
        log.warning("%s has schema version %d, newer than this memoryd knows (%d); it is "
                    "used as it is: upgrade memoryd if anything fails", name, have,
                    len(migrations))
    for number, step in enumerate(migrations, start=1):
        if number <= have:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            if version(db) < number:  # another process may have run it meanwhile
                step(db)
                db.execute(f"PRAGMA user_version = {number}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        log.debug("%s: migration %d (%s) done", name, number, step.__name__)
    return version(db)


def run_script(db: sqlite3.Connection, script: str) -> None:
    """Run `;`-separated statements inside the current transaction (executescript()
    would commit it half-way)."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)
