"""The store's disk full, then read-only, under a running daemon: a clear reason in the
log, the daemon keeps serving search on what it has, no journaled event is lost, the
store is not corrupt, and the waiting events are written once it can write again.

The store lives on a real tmpfs (mounted at <data_dir>/store; the journal stays on the
ordinary disk, as its own full-disk test is in test_journal.py). Full is a filler file
written until ENOSPC; read-only is a remount (root bypasses mode bits, not a ro mount).
"""

from __future__ import annotations

import errno
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.store.lance import Store
from tests.tmpfs import small_tmpfs


@pytest.fixture
def store_disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "data" / "store", "32m") as disk:
        yield disk


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    block = b"\0" * (256 * 1024)
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    with open(filler, "ab", buffering=0) as f:  # the last few KB too
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


def _found(d, phrase: str, name: str) -> bool:
    with d.unix() as c:
        r = c.get("/v1/memory/search", params={"q": phrase, "k": 5}, headers=d.auth())
        assert r.status_code == 200, r.text
        return any(h["title"] == name for h in r.json()["results"])


def _wait(cond, timeout: float, what: str, d) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        assert d.proc.poll() is None, f"the daemon died:\n{d.log.read_text()}"
        time.sleep(0.5)
    raise AssertionError(f"{what}\n{d.log.read_text()[-6000:]}")


def _write(root: Path, tag: str, n: int) -> dict[str, str]:
    out = {}
    for i in range(n):
        name = f"{tag}{i}.md"
        (root / name).write_text(f"{tag} note {i}: the phrase is {tag}qx{i:03d}zed\n")
        out[name] = f"{tag}qx{i:03d}zed"
    return out


def _stages(journal: Path) -> dict[int, int]:
    with sqlite3.connect(journal) as c:
        return dict(c.execute("SELECT stage, COUNT(*) FROM events GROUP BY stage"))


def _waiting(journal: Path) -> set[str]:
    """The file names whose events wait at stage 0 (journaled, not indexed). By name, not
    by row: a save the watcher saw in two steps (created empty, then written) is two
    events of one file, both kept, and both must wait."""
    with sqlite3.connect(journal) as c:
        return {Path(r[0]).name for r in c.execute("SELECT subject FROM events WHERE stage = 0")}


def _rows(journal: Path) -> str:
    with sqlite3.connect(journal) as c:
        return "\n".join(map(str, c.execute("SELECT stage, kind, subject, ts, attrs FROM events")))


def test_store_disk_full_then_read_only_loses_nothing_and_recovers(
        make_config, start_daemon, store_disk: Path, tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    journal = tmp_path / "data" / "journal.sqlite3"
    before = _write(root, "amber", 3)
    d = start_daemon(make_config([root], pipeline={"summarize": False}))
    for name, phrase in before.items():
        _wait(lambda n=name, p=phrase: _found(d, p, n), 180, f"{name} never searchable", d)

    # -- full: the index step's writes fail; search keeps serving the earlier memory --
    filler = _fill(store_disk)
    full = _write(root, "basalt", 3)
    _wait(lambda: _waiting(journal) == set(full), 60, "the new events were not journaled", d)
    _wait(lambda: "its disk is full" in d.log.read_text(), 60, "no clear reason logged", d)
    time.sleep(3)  # several more failed rounds
    assert _waiting(journal) == set(full), _rows(journal)  # still waiting, none marked done
    for name, phrase in before.items():
        assert _found(d, phrase, name)
    # not in the store, but found by full text from the journal (daemon/recall/fresh.py)
    assert all(_found(d, p, n) for n, p in full.items())
    with d.unix() as c:
        assert c.get("/v1/status", headers=d.auth()).status_code == 200
    assert d.log.read_text().count("its disk is full") <= 2  # said, not repeated each second

    filler.unlink()  # space returns
    _wait(lambda: not _stages(journal).get(0), 120, "the new events were not indexed after", d)
    for name, phrase in full.items():
        assert _found(d, phrase, name)
    _wait(lambda: "indexing works again" in d.log.read_text(), 30, "recovery not logged", d)

    # -- read-only: the same, with the other reason ----------------------------------
    subprocess.run(["mount", "-o", "remount,ro", str(store_disk)], check=True)
    try:
        ro = _write(root, "cinder", 2)
        _wait(lambda: _waiting(journal) == set(ro), 60, "the new events were not journaled", d)
        _wait(lambda: "read-only" in d.log.read_text(), 60, "no clear reason logged", d)
        for name, phrase in {**before, **full}.items():
            assert _found(d, phrase, name)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(store_disk)], check=True)
    _wait(lambda: not _stages(journal).get(0), 120, "the new events were not indexed after", d)
    for name, phrase in ro.items():
        assert _found(d, phrase, name)

    # nothing lost, nothing twice, and the tables read back whole
    with sqlite3.connect(journal) as c:
        journaled = {r[0] for r in c.execute("SELECT id FROM events")}
        subjects = {r[0] for r in c.execute("SELECT subject FROM events")}
    assert {Path(s).name for s in subjects} == {*before, *full, *ro}, _rows(journal)
    assert _stages(journal).get(0) is None
    store = Store(store_disk, 384, "all-minilm-l6-v2")
    ids = store.events.to_arrow().column("id").to_pylist()
    assert len(ids) == len(set(ids)) and set(ids) == journaled
    assert store.events.count_rows() == len(journaled)
