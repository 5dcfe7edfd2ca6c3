from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from collectors.base import Batch, Event
from daemon.intake.checkpointer import WRITER_LIMIT_PAGES
from daemon.intake.journal import INDEXED, NEW, SUMMARIZED, Journal, JournalUnwritable
from daemon.intake.redact import redact
from tests.tmpfs import small_tmpfs


def ev(i: int, text: str = "") -> Event:
    return Event.new(ts=1_700_000_000 + i, source="test", kind="test.tick", subject=f"tick/{i}",
                     text=text or f"tick number {i}")


def test_replay_inserts_nothing_twice(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3")
    assert j.append(Batch("t", [ev(i) for i in range(10)], "10")) == 10
    assert j.append(Batch("t", [ev(i) for i in range(10)], "10")) == 0
    assert j.counts()["total"] == 10
    assert j.cursor("t") == "10"


def test_stable_ids_for_the_same_observation() -> None:
    assert ev(1).id == ev(1).id
    assert ev(1).id != ev(2).id


def test_stages_only_move_forward(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3")
    j.append(Batch("t", [ev(i) for i in range(3)]))
    ids = [e.id for e in j.at_stage(NEW, 10)]
    j.advance(ids, SUMMARIZED)
    j.advance(ids, INDEXED)
    assert j.counts() == {"new": 0, "indexed": 0, "summarized": 3, "total": 3}


def test_secrets_are_redacted_before_they_are_stored(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3", redact=redact)
    j.append(Batch("t", [Event.new(ts=1, source="shell", kind="shell.command",
                                   subject="mysql --password=hunter2pass -u root",
                                   text="export GITHUB_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123456789")]))
    j.close()
    raw = (tmp_path / "j.sqlite3").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("j.sqlite3-*"))
    assert b"hunter2pass" not in raw
    assert b"ghp_abcdefghijklmnopqrstuvwxyz0123456789" not in raw
    row = Journal(tmp_path / "j.sqlite3").at_stage(NEW, 1)[0]
    assert "[REDACTED" in row.subject and "[REDACTED" in row.text


# A collector that resumes from its cursor, as real ones do; killed at random moments.
WRITER = r"""
import sys, time
from collectors.base import Batch, Event
from daemon.intake.journal import Journal
path, total, batch, replay = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
j = Journal(__import__("pathlib").Path(path))
start = 0 if replay else int(j.cursor("gen") or 0)
for i in range(start, total, batch):
    evs = [Event.new(ts=1_700_000_000 + n, source="gen", kind="gen.tick", subject=f"n/{n}",
                     text="x" * 200) for n in range(i, min(i + batch, total))]
    j.append(Batch("gen", evs, str(min(i + batch, total))))
"""


def _stored(db: Path) -> int:
    try:
        with sqlite3.connect(db) as c:
            return c.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


def _run_writer(db: Path, total: int, batch: int, replay: bool = False,
                kill_at: int | None = None) -> int:
    """Run the writer; with `kill_at`, SIGKILL it once that many events are stored.
    Return its exit code (-9 when killed)."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(total), str(batch),
                             "1" if replay else "0"])
    if kill_at is not None:
        while proc.poll() is None and _stored(db) < kill_at:
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    return proc.wait(timeout=120)


def test_kill_minus_nine_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "j.sqlite3"
    total = 20_000
    rng = random.Random(7)
    kills = 0
    for _ in range(6):  # kill the collector at random points, then let it resume
        stored = _stored(db)
        if total - stored < 100:
            break
        target = stored + rng.randint(1, (total - stored) // 2)
        if _run_writer(db, total, batch=rng.choice([1, 3, 7]), kill_at=target) == -9:
            kills += 1
        with sqlite3.connect(db) as c:
            stored = c.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            cursor = c.execute("SELECT value FROM cursors WHERE collector='gen'").fetchone()
        # the cursor always matches exactly what was stored: never ahead, never behind
        assert stored == (int(cursor[0]) if cursor else 0)
    assert kills >= 2
    assert _run_writer(db, total, batch=50) == 0
    assert _run_writer(db, total, batch=13, replay=True) == 0  # a full replay adds nothing
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT subject FROM events").fetchall()
    assert len(rows) == total
    assert {r[0] for r in rows} == {f"n/{n}" for n in range(total)}


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs, so the journal meets a genuinely full disk."""
    with small_tmpfs(tmp_path / "tiny", "1m") as disk:
        yield disk


def test_a_full_disk_is_a_clear_error_keeps_what_was_stored_and_recovers(tiny_disk: Path) -> None:
    j = Journal(tiny_disk / "j.sqlite3")
    stored, cursor, i = 0, None, 0
    with pytest.raises(JournalUnwritable, match="full.*free space"):
        while True:  # write batches of ~40 KB until the disk refuses one
            batch = Batch("t", [ev(i * 10 + n, "x" * 4000 + str(n)) for n in range(10)],
                          str(i))
            stored += j.append(batch)
            cursor, i = str(i), i + 1
    assert stored > 0
    # the refused batch left nothing behind, and its cursor did not move
    assert j.counts()["total"] == stored
    assert j.cursor("t") == cursor
    # space returns: the same journal carries on, no restart needed
    subprocess.run(["mount", "-o", "remount,size=8m", str(tiny_disk)], check=True)
    assert j.append(batch) == 10
    assert j.cursor("t") == str(i)
    j.close()
    db = sqlite3.connect(tiny_disk / "j.sqlite3")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == stored + 10


def test_a_read_only_journal_says_so(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3")
    j.append(Batch("t", [ev(1)], "1"))
    j.close()
    ro = Journal.__new__(Journal)  # the same file opened read-only, as a read-only mount would
    ro.path, ro._redact, ro._lock = tmp_path / "j.sqlite3", (lambda s: s), threading.RLock()
    ro.owner = ""
    ro._db = sqlite3.connect(f"file:{tmp_path / 'j.sqlite3'}?mode=ro", uri=True,
                             isolation_level=None, check_same_thread=False)
    with pytest.raises(JournalUnwritable, match="make the data dir writable"):
        ro.append(Batch("t", [ev(2)], "2"))
    assert ro.counts()["total"] == 1


def test_a_backfill_is_copied_into_the_file_by_the_checkpoint_thread(tmp_path: Path) -> None:
    """The writer's commits do not copy the log into the database file (its own limit is a
    high backstop): the journal's checkpoint thread does, shortly after the writes."""
    path = tmp_path / "j.sqlite3"
    j = Journal(path)
    assert j._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == WRITER_LIMIT_PAGES
    for k in range(5):
        j.append(Batch("t", [ev(k * 200 + i, "x" * 300) for i in range(200)], str(k)))
    assert j.checkpointer.wait_idle(timeout=30)
    assert j.checkpointer.checkpoints >= 1
    # the database file alone, without its log, holds every row: they were copied
    alone = tmp_path / "alone.sqlite3"
    alone.write_bytes(path.read_bytes())
    copy = sqlite3.connect(alone)
    assert copy.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 1000
    copy.close()
    j.close()


def test_a_forgotten_event_is_not_stored_again_in_a_batch(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3")
    j.append(Batch("t", [ev(i) for i in range(3)], "3"))
    assert j.forget(ids=[ev(1).id]) == 1
    assert j.append(Batch("t", [ev(i) for i in range(4)], "4")) == 1  # only tick 3 is new
    assert sorted(e.subject for e in j.at_stage(NEW, 10)) == ["tick/0", "tick/2", "tick/3"]
