"""One migration runner for every SQLite file: numbered migrations keyed by PRAGMA
user_version, each in its own transaction; files written by the previous release (the
fixtures were written by memoryd at commit 7f7785e, see their generate.py) open unchanged."""

from __future__ import annotations

import logging
import shutil
import sqlite3
from pathlib import Path

import pytest

from daemon.sqlite_migrations import migrate, version

OLD = Path(__file__).parent / "fixtures" / "sqlite_7f7785e"


def _schema(path: Path) -> list[tuple[str, str]]:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
    finally:
        db.close()


def _user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return version(db)
    finally:
        db.close()


def _old(name: str, tmp_path: Path) -> Path:
    path = tmp_path / name
    shutil.copy(OLD / name, path)
    return path


# ---- the runner -------------------------------------------------------------------------

def test_migrations_run_once_in_order(tmp_path: Path) -> None:
    ran: list[str] = []

    def m1_table(db: sqlite3.Connection) -> None:
        ran.append("m1")
        db.execute("CREATE TABLE t (a INTEGER)")

    def m2_column(db: sqlite3.Connection) -> None:
        ran.append("m2")
        db.execute("ALTER TABLE t ADD COLUMN b TEXT DEFAULT ''")

    db = sqlite3.connect(tmp_path / "x.sqlite3", isolation_level=None)
    assert migrate(db, [m1_table], "x") == 1
    assert migrate(db, [m1_table, m2_column], "x") == 2  # a newer release: only m2 runs
    assert migrate(db, [m1_table, m2_column], "x") == 2
    assert ran == ["m1", "m2"]
    assert [r[1] for r in db.execute("PRAGMA table_info(t)")] == ["a", "b"]
    assert not db.in_transaction


def test_a_failing_migration_leaves_the_file_at_the_version_before(tmp_path: Path) -> None:
    def m1_table(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE t (a INTEGER)")

    def m2_half_done(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE u (a INTEGER)")
        raise RuntimeError("disk gone")

    db = sqlite3.connect(tmp_path / "x.sqlite3")  # the default, implicit transactions
    with pytest.raises(RuntimeError):
        migrate(db, [m1_table, m2_half_done], "x")
    assert version(db) == 1
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"t"}  # u went with its rolled-back transaction


def test_two_connections_run_each_migration_once(tmp_path: Path) -> None:
    calls: list[int] = []

    def m1(db: sqlite3.Connection) -> None:
        calls.append(1)
        db.execute("CREATE TABLE t (a INTEGER)")  # a second run would fail: t exists

    path = tmp_path / "x.sqlite3"
    first, second = sqlite3.connect(path), sqlite3.connect(path)
    assert version(second) == 0  # `second` read the version before `first` migrated
    migrate(first, [m1], "x")
    migrate(second, [m1], "x")
    assert calls == [1] and version(second) == 1


def test_a_file_from_a_newer_release_is_left_alone(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    db = sqlite3.connect(tmp_path / "x.sqlite3")
    db.execute("PRAGMA user_version = 5")
    with caplog.at_level(logging.WARNING):
        assert migrate(db, [lambda db: None], "the thing") == 5
    assert "the thing has schema version 5, newer than this memoryd knows (1)" in caplog.text


# ---- the files of the previous release --------------------------------------------------

def test_the_journal_of_the_previous_release_opens_unchanged(tmp_path: Path) -> None:
    from daemon.intake.journal import INDEXED, Journal

    path = _old("journal.sqlite3", tmp_path)
    before = (_schema(path), _user_version(path))
    j = Journal(path)
    try:
        assert j.counts() == {"new": 1, "indexed": 1, "summarized": 0, "total": 2}
        assert j.cursor("files") == "c-3"
        assert j.forgotten_count() == 2  # the event and the memory forgotten then
        assert [e.subject for e in j.at_stage(INDEXED, 10)] == ["/home/u/notes/0.md"]
    finally:
        j.close()
    # only migration 3 ran: the meta table recording whose ids the events carry (none:
    # a journal opened without an owner keeps the collectors' ids)
    after = (_schema(path), _user_version(path))
    assert before[1] == 2 and after[1] == 3
    assert set(before[0]) <= set(after[0])  # nothing that was there changed
    assert {n for n, _ in after[0]} - {n for n, _ in before[0]} == {
        "meta", "sqlite_autoindex_meta_1"}


def test_the_telemetry_of_the_previous_release_opens_unchanged(tmp_path: Path) -> None:
    from daemon.routing.telemetry import recent_decisions, summary

    path = _old("telemetry.sqlite3", tmp_path)
    before = (_schema(path), _user_version(path))
    assert before[1] == 1
    assert summary(path)["attempts"] == 1
    assert recent_decisions(path)[0]["explanation"] == {"why": "local"}
    assert (_schema(path), _user_version(path)) == before


def test_telemetry_from_before_numbered_migrations_gains_the_tools_column(
        tmp_path: Path) -> None:
    """Version 0: the attempts table as written before attempts.tools existed."""
    from daemon.routing.telemetry import summary

    path = tmp_path / "telemetry.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE attempts (ts REAL, request_id TEXT, route TEXT, task TEXT, "
               "model TEXT, backend TEXT, privacy TEXT, tokens_in INTEGER, tokens_out "
               "INTEGER, cost_usd REAL, latency_ms REAL, ttft_ms REAL, outcome TEXT, "
               "error_class TEXT, fallback_depth INTEGER, memory_used INTEGER)")
    db.execute("INSERT INTO attempts VALUES (1.0, 'r', 'api', 'chat', 'm', 'llama', "
               "'local', 1, 2, 0, 5, NULL, 'ok', '', 0, 0)")
    db.commit()
    db.close()
    assert summary(path)["attempts"] == 1
    assert _user_version(path) == 1
    db = sqlite3.connect(path)
    assert db.execute("SELECT tools FROM attempts").fetchall() == [(0,)]
    db.close()


def test_the_approvals_of_the_previous_release_gain_idempotency_keys(tmp_path: Path) -> None:
    from daemon.approvals.queue import APPROVED, Approvals
    from daemon.config import ApprovalsConfig

    path = _old("approvals.sqlite3", tmp_path)
    before = (_schema(path), _user_version(path))
    assert before[1] == 1
    q = Approvals(path, ApprovalsConfig(keep_days=100000))
    try:
        (row,) = q.list(APPROVED)
        assert (row["task"], row["decided_by"], row["what"]) == ("deploy", "user",
                                                                   {"prompt": "ship it"})
        assert row["idem_key"] is None and row["answered"] is None
    finally:
        q.close()
    after = dict(_schema(path))
    assert _user_version(path) == 2  # migration 2: idempotency keys (survive a restart)
    assert all(c in after["approvals"] for c in ("idem_key", "fingerprint", "orphaned",
                                                 "answered"))
    assert "approvals_idem_key" in after
    Approvals(path, ApprovalsConfig(keep_days=100000)).close()  # opens again: no change
    assert dict(_schema(path)) == after and _user_version(path) == 2


def test_the_sync_state_of_the_previous_release_opens_unchanged(tmp_path: Path) -> None:
    from daemon.sync.state import SyncState

    path = _old("sync.sqlite3", tmp_path)
    schema = _schema(path)
    assert _user_version(path) == 0  # that release kept no version
    s = SyncState(path)
    try:
        assert s.target("nas")["state"] == "healthy"
        assert [p["op"] for p in s.pending("nas")] == ["push"]
        last = s.last_refusal("nas")
        assert last is not None and last["reason"] == "the snapshot is empty"
        assert last["rows"] == 0  # migration 2: refused rows counted, 0 for old refusals
    finally:
        s.close()
    after = dict(_schema(path))
    assert {k: v for k, v in after.items() if k != "refusals"} == {
        k: v for k, v in schema if k != "refusals"}
    assert "rows INTEGER NOT NULL DEFAULT 0" in after["refusals"]
    assert _user_version(path) == 2
