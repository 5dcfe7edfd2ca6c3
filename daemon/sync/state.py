"""Sync state in SQLite (<data_dir>/sync.sqlite3): each target's health, the syncs still
pending (so they resume after the target or the daemon restarts), the last good snapshot
each way, and every guard refusal (kept and counted)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from daemon.sqlite_migrations import Migration, migrate, run_script


def _m1_targets_pending_refusals(db: sqlite3.Connection) -> None:
    # IF NOT EXISTS: files from before numbered migrations (version 0) hold these already
    run_script(db, """
CREATE TABLE IF NOT EXISTS targets (
  name TEXT PRIMARY KEY, state TEXT NOT NULL, reason TEXT NOT NULL, since REAL NOT NULL,
  last_probe REAL, failures INTEGER NOT NULL DEFAULT 0,
  last_push TEXT, last_pull TEXT, last_error TEXT);
CREATE TABLE IF NOT EXISTS pending (
  target TEXT NOT NULL, op TEXT NOT NULL, generation TEXT, force INTEGER NOT NULL DEFAULT 0,
  created REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT,
  PRIMARY KEY (target, op));
CREATE TABLE IF NOT EXISTS refusals (
  id INTEGER PRIMARY KEY, target TEXT NOT NULL, op TEXT NOT NULL, ts REAL NOT NULL,
  reason TEXT NOT NULL)
""")


def _m2_refused_rows(db: sqlite3.Connection) -> None:
    # rows of owners a target may not bring, refused with their snapshot
    db.execute("ALTER TABLE refusals ADD COLUMN rows INTEGER NOT NULL DEFAULT 0")


# Ordered schema changes; PRAGMA user_version counts how many have run. Append only.
MIGRATIONS: tuple[Migration, ...] = (_m1_targets_pending_refusals, _m2_refused_rows)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class SyncState:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                   timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        migrate(self._db, MIGRATIONS, f"the sync state {path}")
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- health ------------------------------------------------------------------------

    def target(self, name: str) -> dict[str, Any]:
        rows = self._exec("SELECT state, reason, since, last_probe, failures, last_push, "
                          "last_pull, last_error FROM targets WHERE name = ?", (name,))
        if not rows:
            return {"state": "unknown", "reason": "not probed yet", "since": None,
                    "last_probe": None, "failures": 0, "last_push": None, "last_pull": None,
                    "last_error": None}
        s, reason, since, probe, failures, push, pull, err = rows[0]
        return {"state": s, "reason": reason, "since": since, "last_probe": probe,
                "failures": failures, "last_push": json.loads(push) if push else None,
                "last_pull": json.loads(pull) if pull else None, "last_error": err}

    def set_state(self, name: str, state: str, reason: str, failures: int | None = None) -> bool:
        """Record a target's state; `since` moves only when the state changes. Return True
        on a change."""
        now = time.time()
        cur = self.target(name)
        changed = cur["state"] != state
        since = now if changed or cur["since"] is None else cur["since"]
        fails = cur["failures"] if failures is None else failures
        self._exec(
            "INSERT INTO targets (name, state, reason, since, last_probe, failures) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET state = excluded.state, "
            "reason = excluded.reason, since = excluded.since, last_probe = excluded.last_probe, "
            "failures = excluded.failures", (name, state, reason, since, now, fails))
        return changed

    def record_good(self, name: str, op: str, summary: dict[str, Any]) -> None:
        if self.target(name)["state"] == "unknown":
            self.set_state(name, "up", "reachable")
        col = "last_push" if op == "push" else "last_pull"
        self._exec(f"UPDATE targets SET {col} = ?, last_error = NULL WHERE name = ?",
                   (json.dumps(summary), name))

    def record_error(self, name: str, message: str) -> None:
        if self.target(name)["state"] == "unknown":
            self.set_state(name, "down", message)
        self._exec("UPDATE targets SET last_error = ? WHERE name = ?", (message, name))

    # -- pending syncs -----------------------------------------------------------------

    def add_pending(self, target: str, op: str, force: bool = False) -> None:
        self._exec("INSERT INTO pending (target, op, force, created) VALUES (?, ?, ?, ?) "
                   "ON CONFLICT(target, op) DO UPDATE SET force = max(force, excluded.force)",
                   (target, op, int(force), time.time()))

    def set_pending_generation(self, target: str, op: str, generation: str) -> None:
        self._exec("UPDATE pending SET generation = ? WHERE target = ? AND op = ?",
                   (generation, target, op))

    def pending_failed(self, target: str, op: str, error: str) -> None:
        self._exec("UPDATE pending SET attempts = attempts + 1, last_error = ? "
                   "WHERE target = ? AND op = ?", (error, target, op))

    def done(self, target: str, op: str) -> None:
        self._exec("DELETE FROM pending WHERE target = ? AND op = ?", (target, op))

    def pending(self, target: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT target, op, generation, force, created, attempts, last_error FROM pending"
        rows = self._exec(sql + (" WHERE target = ?" if target else "") + " ORDER BY created",
                          (target,) if target else ())
        return [{"target": t, "op": op, "generation": g, "force": bool(f), "created": _iso(c),
                 "attempts": a, "last_error": e} for t, op, g, f, c, a, e in rows]

    # -- refusals ----------------------------------------------------------------------

    def refuse(self, target: str, op: str, reason: str, rows: int = 0) -> None:
        self._exec("INSERT INTO refusals (target, op, ts, reason, rows) VALUES (?, ?, ?, ?, ?)",
                   (target, op, time.time(), reason, rows))

    def last_refusal(self, target: str) -> dict[str, Any] | None:
        rows = self._exec("SELECT op, ts, reason, rows FROM refusals WHERE target = ? "
                          "ORDER BY id DESC LIMIT 1", (target,))
        if not rows:
            return None
        op, ts, reason, n = rows[0]
        return {"op": op, "at": _iso(ts), "reason": reason, "rows": n}

    def refused_rows(self) -> dict[str, int]:
        """Rows refused for their owners, per target, over every refusal kept."""
        return {t: int(n) for t, n in self._exec(
            "SELECT target, sum(rows) FROM refusals GROUP BY target")}

    def refusal_counts(self) -> dict[str, int]:
        return dict(self._exec("SELECT target, count(*) FROM refusals GROUP BY target"))
