"""The browser collector's sources: profile discovery, Safari, and databases it cannot
read. Chromium's History here is real (one headless session, see browser_fixtures.py);
Safari cannot run on Linux, so its History.db is *built* from Safari's published schema,
not written by Safari.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collectors.base import Collector, Event
from collectors.browser import BrowserCollector, build_browser_collector
from daemon.intake.journal import NEW, Journal
from tests.collectors.browser_fixtures import (  # noqa: F401 - site, chromium_run: fixtures
    SAFARI_EPOCH,
    ChromiumRun,
    build_safari_history,
    chromium_run_fixture,
    needs_chromium,
    site_fixture,
)


def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal.sqlite3")


def events(j: Journal) -> list[Event]:
    return j.at_stage(NEW, 10_000)


def only_files(*paths: Path, tmp_path: Path) -> BrowserCollector:
    """A collector for exactly these files: discovery looks in an empty home."""
    return build_browser_collector([str(p) for p in paths], home=tmp_path / "empty-home")


def test_safari_history_built_from_the_published_schema(tmp_path: Path) -> None:
    """Safari cannot run here: this History.db is built by `build_safari_history` from
    Safari's published schema (history_items, history_visits; visit_time in seconds
    since 2001-01-01 UTC), not written by Safari."""
    home = tmp_path / "home"
    db = build_safari_history(home / "Library" / "Safari" / "History.db", [
        ("https://example.org/heron", "Heron notes", 1767225600.5),  # 2026-01-01T00:00:00.5Z
        ("http://short.example/x", None, 1767225601.0),  # a redirect's first hop
        ("https://example.org/landing", "Landing", 1767225601.25),
        ("file:///Users/me/notes.txt", "notes.txt", 1767225602.0),
    ])
    writer = sqlite3.connect(db)  # Safari still running: a committed visit in the WAL
    try:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("UPDATE history_visits SET redirect_destination = 3 WHERE id = 2")
        writer.execute("INSERT INTO history_visits (history_item, visit_time, title)"
                       " VALUES (1, ?, 'Heron notes, again')", (1767229200.0 - SAFARI_EPOCH,))
        writer.commit()
        assert Path(f"{db}-wal").stat().st_size > 0
        j = journal(tmp_path)
        c = build_browser_collector([], home=home)
        assert c.poll(j) == 3
    finally:
        writer.close()
    evs = sorted(events(j), key=lambda e: e.attrs["visit_id"])
    assert [e.subject for e in evs] == ["https://example.org/heron", "https://example.org/landing",
                                        "https://example.org/heron"]
    assert evs[0].ts == datetime(2026, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)
    assert evs[2].ts == datetime(2026, 1, 1, 1, 0, 0, tzinfo=UTC)
    assert evs[2].title == "Heron notes, again"
    assert evs[0].attrs == {"browser": "safari", "profile": "default", "visit_id": 1}


def test_cleared_history_whose_visit_ids_come_back_is_read_again(tmp_path: Path) -> None:
    """Firefox reuses visit ids after "clear recent history": new visits must not hide
    behind the old cursor. (A built Safari-schema database, ids forced as Firefox would.)"""
    db = build_safari_history(tmp_path / "Safari" / "History.db", [
        (f"https://example.org/{n}", f"page {n}", 1767225600.0 + n) for n in (1, 2, 3)])
    j = journal(tmp_path)
    c = only_files(db, tmp_path=tmp_path)
    assert c.poll(j) == 3
    con = sqlite3.connect(db)
    con.execute("DELETE FROM history_visits WHERE id >= 2")  # the last hour, cleared
    for n in (2, 3, 4):  # then browsing on: the same ids, later times
        con.execute("INSERT INTO history_visits (id, history_item, visit_time, title)"
                    " VALUES (?, 1, ?, ?)", (n, 1767232800.0 + n - SAFARI_EPOCH, f"later {n}"))
    con.commit()
    con.close()
    assert c.poll(j) == 3
    assert sorted(e.title for e in events(j)) == ["later 2", "later 3", "later 4",
                                                   "page 1", "page 2", "page 3"]
    assert c.poll(j) == 0


@needs_chromium
def test_every_chromium_profile_is_discovered(chromium_run: ChromiumRun, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    chrome = home / ".config" / "google-chrome"
    placed = [chrome / "Default", chrome / "Profile 1",
              home / ".config" / "BraveSoftware" / "Brave-Browser" / "Default",
              home / "Library" / "Application Support" / "Microsoft Edge" / "Default",
              home / ".config" / "opera",  # Opera: the profile is the top folder
              home / "xdg" / "chromium" / "Default"]  # under $XDG_CONFIG_HOME
    for folder in placed:
        folder.mkdir(parents=True)
        shutil.copyfile(chromium_run.history, folder / "History")
    (chrome / "Local State").write_text(json.dumps({"profile": {"info_cache": {
        "Default": {"name": "Your Chrome", "is_using_default_name": True},
        "Profile 1": {"name": "Work", "is_using_default_name": False}}}}))
    c = build_browser_collector([], home=home)
    assert isinstance(c, Collector) and c.name == "browser" and c.poll_seconds == 30.0
    found = {(s.browser, s.profile) for s in c.sources()}
    assert found == {("chrome", "Default"), ("chrome", "Work"), ("brave", "Default"),
                     ("edge", "Default"), ("opera", "opera")}
    j = journal(tmp_path)
    assert c.poll(j) == 4 * len(found)  # the same visits, but each profile's own
    assert {e.attrs["browser"] for e in events(j)} == {"chrome", "brave", "edge", "opera"}
    assert {e.attrs["profile"] for e in events(j)} == {"Default", "Work", "opera"}
    # the real home: $HOME, with ~/.config wherever XDG_CONFIG_HOME says
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "xdg"))
    assert {(s.browser, s.profile) for s in build_browser_collector([]).sources()} == {
        ("chromium", "Default"), ("edge", "Default")}


@needs_chromium
def test_corrupt_half_written_and_changed_databases_are_skipped_not_fatal(
        chromium_run: ChromiumRun, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def place(name: str) -> Path:
        (tmp_path / name).mkdir()
        return Path(shutil.copyfile(chromium_run.history, tmp_path / name / "History"))

    garbage = tmp_path / "garbage" / "History"
    garbage.parent.mkdir()
    garbage.write_bytes(b"this is not a database\x00\xff" * 4096)
    half = place("half")
    with open(half, "r+b") as fh:
        fh.truncate(half.stat().st_size // 2)  # a copy cut short
    changed = place("changed")
    con = sqlite3.connect(changed)
    con.execute("DROP TABLE visits")  # a future Chromium that moved its visits
    con.commit()
    con.close()
    good = place("good")
    missing = tmp_path / "nowhere" / "History"
    c = only_files(garbage, half, changed, missing, good, tmp_path=tmp_path)
    j = journal(tmp_path)
    with caplog.at_level(logging.DEBUG, logger="collectors.browser"):
        assert c.poll(j) == 4  # the good one is collected all the same
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(garbage) in m and "not a database" in m for m in warned)
    assert any(str(half) in m and "malformed" in m for m in warned)
    assert any(str(changed) in m and "schema changed" in m and "visits" in m for m in warned)
    assert any(str(missing) in m for m in warned)
    assert len(warned) == 4
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="collectors.browser"):
        assert c.poll(j) == 0  # still broken: tried again, but not warned about again
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len([r for r in caplog.records if r.levelno == logging.DEBUG]) == 4
    shutil.copyfile(chromium_run.history, garbage)  # repaired: picked up on the next poll
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="collectors.browser"):
        assert c.poll(j) == 4
    assert any("readable again" in r.getMessage() for r in caplog.records)
