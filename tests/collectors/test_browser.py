"""The browser collector on history written by real browsers.

Chromium and Firefox ESR run headless against a loopback page server (see
browser_fixtures.py) and write their own History / places.sqlite; the collector reads
them, also while the browser is still running. Discovery, Safari and broken databases
are in test_browser_sources.py.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import time
from datetime import UTC
from pathlib import Path

import pytest

from collectors.base import Event
from collectors.browser import BrowserCollector, build_browser_collector
from daemon.intake.journal import NEW, Journal
from tests.collectors.browser_fixtures import (  # noqa: F401 - site, chromium_run: fixtures
    Chromium,
    ChromiumRun,
    Firefox,
    PageServer,
    chromium_run_fixture,
    needs_chromium,
    needs_firefox,
    site_fixture,
    write_profiles_ini,
)


def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal.sqlite3")


def events(j: Journal) -> list[Event]:
    return j.at_stage(NEW, 10_000)


def by_path(evs: list[Event]) -> dict[str, list[Event]]:
    """Events by URL path ("/alpha.html"), each list in visit order."""
    out: dict[str, list[Event]] = {}
    for e in sorted(evs, key=lambda e: e.attrs["visit_id"]):
        out.setdefault("/" + e.subject.split("/", 3)[3], []).append(e)
    return out


def only_files(*paths: Path, tmp_path: Path) -> BrowserCollector:
    """A collector for exactly these files: discovery looks in an empty home."""
    return build_browser_collector([str(p) for p in paths], home=tmp_path / "empty-home")


def poll_until(c: BrowserCollector, j: Journal, count: int, seconds: float) -> bool:
    """Poll every half second until the journal holds `count` events."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        c.poll(j)
        if len(events(j)) >= count:
            return True
        time.sleep(0.5)
    return False


@needs_chromium
def test_real_chromium_history_becomes_one_event_per_visit(chromium_run: ChromiumRun,
                                                          tmp_path: Path) -> None:
    j = journal(tmp_path)
    c = only_files(chromium_run.history, tmp_path=tmp_path)
    assert c.poll(j) == 4
    visits = by_path(events(j))
    # the 302's first hop is not a page anyone saw: only its end is recorded
    assert sorted(visits) == ["/alpha.html", "/beta.html", "/gamma.html"]
    alpha, = visits["/alpha.html"]
    assert alpha.source == "browser" and alpha.kind == "browser.visit"
    assert alpha.title == alpha.text == "Alpha page – the ocelot rollout"
    assert alpha.attrs["transition"] == "typed"
    assert alpha.attrs["browser"] == "chromium" and alpha.attrs["profile"] == "Default"
    assert [e.attrs["transition"] for e in visits["/beta.html"]] == ["link", "reload"]
    assert visits["/beta.html"][0].title == "Beta page with ünïcode"
    assert visits["/gamma.html"][0].attrs["transition"] == "link"
    for e in events(j):
        assert e.ts.tzinfo is UTC
        assert chromium_run.started - 60 < e.ts.timestamp() < chromium_run.ended + 60
        assert isinstance(e.attrs["visit_id"], int)
    assert c.poll(j) == 0
    assert len(events(j)) == 4


@needs_chromium
def test_chromium_is_read_while_it_runs_and_holds_its_history_locked(
        site: PageServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    j = journal(tmp_path)
    with Chromium(tmp_path / "user-data") as browser:
        browser.navigate(site.url("/alpha.html"), "typed")
        browser.navigate(site.url("/beta.html"), "link")
        c = only_files(browser.history, tmp_path=tmp_path)
        sidecars = sorted(p.name for p in browser.history.parent.glob("History*"))
        # Chromium commits its history every ~10 s, keeping a transaction open in between:
        # until then a read finds nothing new, and must neither fail nor block the browser.
        with caplog.at_level(logging.DEBUG, logger="collectors.browser"):
            assert poll_until(c, j, 2, seconds=25)
        assert not caplog.records, "no poll was skipped or failed"
        assert browser.proc.poll() is None, "the browser kept running"
        assert sorted(p.name for p in browser.history.parent.glob("History*")) == sidecars
        with pytest.raises(sqlite3.OperationalError):  # what a naive reader would hit
            con = sqlite3.connect(f"file:{browser.history}?mode=ro", uri=True)
            try:
                con.execute("SELECT count(*) FROM visits").fetchone()
            finally:
                con.close()
        browser.navigate(site.url("/gamma.html"), "link")
        assert browser.close() == 0
    assert c.poll(j) == 1
    assert sorted(by_path(events(j))) == ["/alpha.html", "/beta.html", "/gamma.html"]


@needs_chromium
def test_a_restarted_collector_resumes_without_duplicates(chromium_run: ChromiumRun,
                                                         site: PageServer,
                                                         tmp_path: Path) -> None:
    udd = tmp_path / "user-data"
    shutil.copytree(chromium_run.user_data_dir, udd)
    history = udd / "Default" / "History"
    j = journal(tmp_path)
    assert only_files(history, tmp_path=tmp_path).poll(j) == 4
    cursor = json.loads(j.cursor("browser") or "{}")
    assert cursor["dbs"][str(history)]["id"] == 5  # the last visit id, a hidden hop included
    # the daemon restarts: a new collector, the same journal
    assert only_files(history, tmp_path=tmp_path).poll(j) == 0
    with Chromium(udd) as browser:  # the user browses on in the same profile
        browser.navigate(site.url("/delta.html"), "typed")
        browser.navigate(site.url("/epsilon.html"), "link")
    again = only_files(history, tmp_path=tmp_path)
    assert again.poll(j) == 2
    assert again.poll(j) == 0
    subjects = [e.subject for e in events(j)]
    assert len(subjects) == 6
    assert {s.rsplit("/", 1)[1] for s in subjects[-2:]} == {"delta.html", "epsilon.html"}


@needs_firefox
def test_real_firefox_profile_is_found_and_read_while_running(
        site: PageServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    home = tmp_path / "home"
    ff_dir = home / ".mozilla" / "firefox"
    write_profiles_ini(ff_dir, {"default-esr": "k3x9.default-esr", "never-used": "gone.x"})
    j = journal(tmp_path)
    c = build_browser_collector([], home=home)
    started = time.time()
    with Firefox(ff_dir / "k3x9.default-esr") as browser:
        assert browser.navigate(site.url("/alpha.html")).startswith("Alpha")
        browser.navigate(site.url("/beta.html"))
        assert browser.navigate(site.url("/moved")) == "Gamma page three"
        # Firefox holds places.sqlite locked, with the new visits in its WAL
        with caplog.at_level(logging.DEBUG, logger="collectors.browser"):
            assert poll_until(c, j, 3, seconds=15)
        assert not caplog.records, "no poll was skipped or failed"
        assert browser.proc.poll() is None, "the browser kept running"
        browser.navigate(site.url("/delta.html"))
        assert browser.quit() == 0
    ended = time.time()
    assert c.poll(j) == 1
    visits = by_path(events(j))
    # the 302's source is hidden by Firefox and skipped; its target says how it came
    assert sorted(visits) == ["/alpha.html", "/beta.html", "/delta.html", "/gamma.html"]
    alpha, = visits["/alpha.html"]
    assert alpha.title == alpha.text == "Alpha page – the ocelot rollout"
    assert alpha.attrs["browser"] == "firefox" and alpha.attrs["profile"] == "default-esr"
    assert alpha.attrs["transition"] == "link"
    assert visits["/gamma.html"][0].attrs["transition"] == "redirect_temporary"
    assert visits["/beta.html"][0].title == "Beta page with ünïcode"
    for e in events(j):
        assert started - 60 < e.ts.timestamp() < ended + 60 and e.ts.tzinfo is UTC
    # nothing but visits: Firefox's default bookmarks (never visited) are not history
    assert all(e.subject.startswith("http://127.0.0.1:") for e in events(j))
