"""The browser collector killed with SIGKILL in the middle of a poll: nothing lost, nothing
stored twice. The History file was written by real Chromium (browser_fixtures.py) and then
grown with many more visits; see the test's docstring for which rows Chromium wrote.
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from collectors.browser import BrowserCollector, build_browser_collector
from daemon.intake.journal import NEW, Journal
from tests.collectors.browser_fixtures import (  # noqa: F401 - site, chromium_run: fixtures
    ChromiumRun,
    chromium_run_fixture,
    needs_chromium,
    site_fixture,
)

LINK = 0x30000000  # what Chromium stores for a followed link: core type 0, chain start + end

KILLED_POLL = """
import sys
from pathlib import Path
from collectors.browser import build_browser_collector
from daemon.intake.journal import Journal
c = build_browser_collector([sys.argv[2]], home=Path(sys.argv[3]), discover=False)
c.poll(Journal(Path(sys.argv[1])))
print("finished")
"""


def grow(history: Path, n: int) -> list[int]:
    """Add `n` visits (to 2,000 loopback URLs, one second apart, after Chromium's own) to
    the `urls` and `visits` tables of `history`; return the new visit ids in order."""
    con = sqlite3.connect(history)
    try:
        with con:
            last, t = con.execute("SELECT max(id), max(visit_time) FROM visits").fetchone()
            urls = [con.execute("INSERT INTO urls (url, title, visit_count, last_visit_time)"
                                " VALUES (?, ?, 0, 0)",
                                (f"http://127.0.0.1/bulk/{k}.html", f"Bulk page {k}")).lastrowid
                    for k in range(2000)]
            for i in range(n):
                url, when = urls[i % len(urls)], t + (i + 1) * 1_000_000
                con.execute("INSERT INTO visits (url, visit_time, transition) VALUES (?, ?, ?)",
                            (url, when, LINK))
                con.execute("UPDATE urls SET visit_count = visit_count + 1, last_visit_time = ?"
                            " WHERE id = ?", (when, url))
        return [r[0] for r in con.execute("SELECT id FROM visits WHERE id > ? ORDER BY id",
                                          (last,))]
    finally:
        con.close()


def stored(j: Journal, history: Path) -> tuple[list[int], list[str], int | None]:
    """The visit ids and event ids in the journal, in the order stored, and the cursor's
    visit id for `history`."""
    evs = j.at_stage(NEW, 1_000_000)
    cursor = json.loads(j.cursor("browser") or '{"dbs": {}}')["dbs"].get(str(history), {})
    return [e.attrs["visit_id"] for e in evs], [e.id for e in evs], cursor.get("id")


@needs_chromium
def test_kill_9_mid_collection_loses_nothing_and_duplicates_nothing(
        chromium_run: ChromiumRun, tmp_path: Path) -> None:
    """A History file written by real Chromium is copied, then grown to ~20,000 visits by
    inserting rows into its own `urls` and `visits` tables with sqlite3 (same schema,
    increasing visit times, http://127.0.0.1 URLs): the bulk rows are inserted into a
    Chromium-written database, not visited by Chromium. A subprocess polls it into a
    journal (1,000 visits per batch, each committed with its cursor) and is killed with
    SIGKILL at a random moment between 10% and 80% of the way, anywhere within a batch;
    a fresh poll then stores exactly the rest."""
    history = tmp_path / "Default" / "History"
    history.parent.mkdir()
    shutil.copyfile(chromium_run.history, history)
    home = tmp_path / "empty-home"
    home.mkdir()

    def collector() -> BrowserCollector:
        return build_browser_collector([str(history)], home=home, discover=False)

    ref = Journal(tmp_path / "before-growth.sqlite3")  # what Chromium's own visits give
    assert collector().poll(ref) == 4
    real_ids = stored(ref, history)[0]
    ref.close()

    n = 20_000
    expected = real_ids + grow(history, n)
    total = len(expected)
    assert total // collector().page_size >= 10, "it must commit in many batches, not one"

    path = tmp_path / "journal.sqlite3"
    watcher = Journal(path)
    target = random.randint(total // 10, total * 8 // 10)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_POLL, str(path), str(history),
                             str(home)], cwd=Path(__file__).parents[2], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        seen, last, gap = 0, 0.0, 0.0  # events stored; when the last commit was seen; between
        while seen < target and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.005)
            if (count := watcher.counts()["total"]) > seen:
                now = time.monotonic()
                seen, last, gap = count, now, now - last if seen else 0.0
        # not right after the commit just seen: anywhere in the batch that follows it
        time.sleep(random.uniform(0, gap))
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -9, "the poll finished before it could be killed"
    visits, _, cursor = stored(watcher, history)
    at_kill = len(visits)
    assert target <= at_kill < total, (target, at_kill)
    # what was committed is a prefix of the history, and its cursor says exactly that much
    assert visits == expected[:at_kill]
    assert cursor == visits[-1]

    assert collector().poll(watcher) == total - at_kill
    visits, ids, cursor = stored(watcher, history)
    assert watcher.counts()["total"] == total
    assert visits == expected  # every visit, once, in order
    assert len(set(ids)) == len(ids) == total
    assert cursor == expected[-1]
    assert collector().poll(watcher) == 0
    watcher.close()
