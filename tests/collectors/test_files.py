"""The files collector on a real filesystem with real inotify (watchdog)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from collectors.files import FileRules, FilesCollector
from daemon.intake.journal import NEW, Journal


def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal.sqlite3")


def events_for(j: Journal, path: Path) -> list:
    return [e for e in j.at_stage(NEW, 10_000) if e.subject == str(path)]


def make_tree(root: Path) -> None:
    (root / "proj").mkdir(parents=True)
    (root / "proj" / "plan.md").write_text("The ocelot rollout starts on Tuesday.\n")
    (root / "proj" / ".git").mkdir()
    (root / "proj" / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "proj" / "node_modules" / "x").mkdir(parents=True)
    (root / "proj" / "node_modules" / "x" / "index.js").write_text("module.exports = 1\n")
    (root / "proj" / "env").mkdir()
    (root / "proj" / "env" / "pyvenv.cfg").write_text("home = /usr\n")
    (root / "proj" / "env" / "lib.py").write_text("print('venv')\n")
    (root / "proj" / ".plan.md.swp").write_bytes(b"vim swap")
    (root / "proj" / "plan.md~").write_text("backup\n")
    (root / "proj" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (root / "proj" / "dump.txt").write_text("big " * 1000)


def test_backfill_records_text_skips_noise_and_keeps_binaries_as_metadata(tmp_path: Path) -> None:
    root = tmp_path / "src"
    make_tree(root)
    j = journal(tmp_path)
    c = FilesCollector([root], FileRules(max_file_bytes=2000))
    assert c.poll(j) == 3
    by_name = {Path(e.subject).name: e for e in j.at_stage(NEW, 100)}
    assert set(by_name) == {"plan.md", "logo.png", "dump.txt"}
    plan = by_name["plan.md"]
    assert plan.kind == "file.modified" and plan.source == "files"
    assert "ocelot rollout" in plan.text
    assert abs(plan.ts.timestamp() - os.stat(root / "proj" / "plan.md").st_mtime_ns / 1e9) < 1e-5
    assert by_name["logo.png"].text == "" and by_name["logo.png"].attrs["binary"] is True
    assert by_name["dump.txt"].text == "" and "larger than" in by_name["dump.txt"].attrs["skipped"]
    assert j.cursor("files") is not None
    # a second backfill adds nothing; a real change adds exactly one event
    assert c.poll(j) == 0
    time.sleep(0.01)
    (root / "proj" / "plan.md").write_text("The ocelot rollout moved to Friday.\n")
    assert c.poll(j) == 1
    assert len(events_for(j, root / "proj" / "plan.md")) == 2


def test_memoryd_data_dir_under_a_root_is_never_collected(tmp_path: Path) -> None:
    root = tmp_path / "home"
    (root / "notes").mkdir(parents=True)
    (root / "notes" / "a.txt").write_text("a note\n")
    data = root / ".local" / "memoryd"
    data.mkdir(parents=True)
    (data / "journal.txt").write_text("memoryd's own file\n")
    j = journal(tmp_path)
    c = FilesCollector([root], FileRules(exclude_paths=(data,)))
    c.poll(j)
    assert [Path(e.subject).name for e in j.at_stage(NEW, 100)] == ["a.txt"]


def wait_for(cond, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def test_live_editor_saves_become_one_event_each(tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    target = root / "report.md"
    target.write_text("draft one\n")
    j = journal(tmp_path)
    c = FilesCollector([root], FileRules(), settle_seconds=0.5)
    c.start(j)
    try:
        time.sleep(0.3)
        # an atomic save through a temp file, as many editors do
        tmp = root / ".report.md.tmp"
        tmp.write_text("draft two: the quarterly heron numbers\n")
        os.replace(tmp, target)
        assert wait_for(lambda: len(events_for(j, target)) == 1)
        time.sleep(1.0)
        # a vim-style save: rename to a backup, write anew, delete the backup, in a burst
        os.rename(target, root / "report.md~")
        for i in range(5):
            with open(target, "a") as fh:
                fh.write(f"draft three, line {i}\n")
        os.unlink(root / "report.md~")
        assert wait_for(lambda: len(events_for(j, target)) == 2)
        time.sleep(1.5)  # nothing else trickles in
        evs = events_for(j, target)
        assert len(evs) == 2
        assert "heron" in evs[0].text and "draft three, line 4" in evs[1].text
        assert not [e for e in j.at_stage(NEW, 100) if e.subject.endswith(("~", ".tmp"))]
        # a delete is recorded
        target.unlink()
        assert wait_for(lambda: any(e.kind == "file.deleted" for e in events_for(j, target)))
    finally:
        c.stop()


def test_a_root_created_after_start_is_watched_and_backfilled(tmp_path: Path) -> None:
    root = tmp_path / "Documents"
    j = journal(tmp_path)
    c = FilesCollector([root], FileRules(), settle_seconds=0.3)
    c.start(j)
    try:
        root.mkdir()
        (root / "first.txt").write_text("written before the watch began\n")
        assert wait_for(lambda: len(events_for(j, root / "first.txt")) == 1, seconds=15)
        time.sleep(0.5)
        (root / "second.txt").write_text("written while watched\n")
        assert wait_for(lambda: len(events_for(j, root / "second.txt")) == 1)
    finally:
        c.stop()


def test_paths_a_git_repository_ignores_are_skipped(tmp_path: Path) -> None:
    import subprocess

    root = tmp_path / "src"
    repo = root / "app"
    repo.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".gitignore").write_text("secrets.env\ndata/\n*.log\n!keep.log\n")
    (repo / "main.py").write_text("print('hi')\n")
    (repo / "secrets.env").write_text("API=1\n")
    (repo / "debug.log").write_text("noise\n")
    (repo / "keep.log").write_text("kept on purpose\n")
    (repo / "data").mkdir()
    (repo / "data" / "big.csv").write_text("a,b\n")
    (root / "outside.log").write_text("not in a repo, so kept\n")
    j = journal(tmp_path)
    c = FilesCollector([root], FileRules(), settle_seconds=0.3)
    c.poll(j)
    names = sorted(Path(e.subject).name for e in j.at_stage(NEW, 100))
    assert names == [".gitignore", "keep.log", "main.py", "outside.log"]
    # live changes to ignored files are skipped as well
    c.start(j)
    try:
        time.sleep(0.3)
        (repo / "debug.log").write_text("more noise\n")
        (repo / "main.py").write_text("print('hello')\n")
        assert wait_for(lambda: len(events_for(j, repo / "main.py")) == 2)
        time.sleep(1.0)
        assert len(events_for(j, repo / "debug.log")) == 0
    finally:
        c.stop()


def test_a_move_is_one_file_moved_event(tmp_path: Path) -> None:
    root = tmp_path / "src"
    (root / "drafts").mkdir(parents=True)
    (root / "final").mkdir()
    src = root / "drafts" / "essay.md"
    src.write_text("On the migration of terns.\n")
    j = journal(tmp_path)
    c = FilesCollector([root], FileRules(), settle_seconds=0.3)
    c.start(j)
    try:
        time.sleep(0.3)
        dest = root / "final" / "essay.md"
        os.rename(src, dest)
        assert wait_for(lambda: len(events_for(j, dest)) == 1)
        time.sleep(1.0)
        (ev,) = events_for(j, dest)
        assert ev.kind == "file.moved" and ev.attrs["moved_from"] == str(src)
        assert "terns" in ev.text
        assert events_for(j, src) == []  # not also a delete
    finally:
        c.stop()


def _inotify_limit(value: int | None = None) -> int:
    path = Path("/proc/sys/fs/inotify/max_user_watches")
    if value is not None:
        path.write_text(f"{value}\n")
    return int(path.read_text())


def test_when_inotify_watches_run_out_the_root_is_scanned_instead(tmp_path: Path,
                                                                  caplog) -> None:
    import collectors.files as files

    if os.geteuid() != 0:
        import pytest

        pytest.skip("needs root to lower fs.inotify.max_user_watches for a moment")
    root = tmp_path / "src"
    for i in range(30):
        (root / f"d{i}").mkdir(parents=True)
    j = journal(tmp_path)
    c = FilesCollector([root], FileRules(), settle_seconds=0.3)
    saved = _inotify_limit()
    old_scan = files.FALLBACK_SCAN_SECONDS
    files.FALLBACK_SCAN_SECONDS = 1
    try:
        _inotify_limit(0)  # every new watch fails now, as on a machine that ran out
        with caplog.at_level("WARNING"):
            c.start(j)
        _inotify_limit(saved)
        assert "max_user_watches" in caplog.text  # a clear warning, not a crash
        (root / "d7" / "late.txt").write_text("written while unwatched\n")
        assert wait_for(lambda: len(events_for(j, root / "d7" / "late.txt")) == 1, seconds=15)
    finally:
        _inotify_limit(saved)
        files.FALLBACK_SCAN_SECONDS = old_scan
        c.stop()


def test_changes_refused_by_a_full_journal_are_recorded_once_it_has_room(
        tmp_path: Path) -> None:
    """Saves, a move and a delete made while the journal's disk is full (a real tmpfs
    filled to ENOSPC) wait in the collector; once space is freed each is recorded once."""
    from tests.tmpfs import small_tmpfs

    root = tmp_path / "src"
    root.mkdir()
    (root / "old.md").write_text("The heron survey is due on Friday.\n")
    (root / "gone.md").write_text("A note about the egret census.\n")
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        j = Journal(disk / "journal.sqlite3")
        c = FilesCollector([root], FileRules(), settle_seconds=0.3)
        c.start(j)
        try:
            filler = disk / "filler"
            with filler.open("wb") as f:  # fill the disk to the last byte
                try:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                except OSError:
                    pass
            (root / "new.md").write_text("The ibis count was 41.\n")
            os.rename(root / "old.md", root / "moved.md")
            (root / "gone.md").unlink()
            time.sleep(2.0)  # several flushes, each refused by the full journal
            filler.unlink()

            def by_subject() -> dict[str, list[str]]:
                out: dict[str, list[str]] = {}
                for e in j.at_stage(NEW, 10_000):
                    out.setdefault(e.subject, []).append(e.kind)
                return out

            wanted = {str(root / n) for n in ("new.md", "moved.md", "gone.md")}
            assert wait_for(lambda: wanted <= set(by_subject()), seconds=20), by_subject()
            time.sleep(1.0)  # and nothing arrives twice
            seen = by_subject()
            assert seen.get(str(root / "new.md")) == ["file.modified"]
            assert seen.get(str(root / "moved.md")) == ["file.moved"]
            assert seen.get(str(root / "gone.md")) == ["file.deleted"]
            assert str(root / "old.md") not in seen  # a move, not a delete
        finally:
            c.stop()
            j.close()
