from __future__ import annotations

from datetime import UTC, datetime, timedelta

from collectors.base import Event
from daemon.pipeline.chunking import chunk_events

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def at(minutes: float, source: str = "files") -> Event:
    return Event.new(ts=T0 + timedelta(minutes=minutes), source=source, kind="k",
                     subject=f"{source}/{minutes}")


def test_pauses_and_sources_split_chunks_and_the_open_chunk_waits() -> None:
    events = [at(0), at(1), at(2), at(30), at(31), at(1, "shell"), at(2, "shell")]
    now = T0 + timedelta(minutes=31, seconds=5)
    chunks = chunk_events(events, gap_seconds=300, max_events=40, now=now,
                          close_after_seconds=20, flush=False)
    sizes = sorted((c.source, len(c.events)) for c in chunks)
    # files 30–31 is still open (its last event is 5 s old); the others are closed
    assert sizes == [("files", 3), ("shell", 2)]
    flushed = chunk_events(events, gap_seconds=300, max_events=40, now=now,
                           close_after_seconds=20, flush=True)
    assert sorted(len(c.events) for c in flushed) == [2, 2, 3]


def test_full_chunks_close_and_ids_are_stable() -> None:
    events = [at(i / 10) for i in range(25)]
    now = T0 + timedelta(minutes=3)
    chunks = chunk_events(events, gap_seconds=300, max_events=10, now=now,
                          close_after_seconds=600, flush=False)
    assert [len(c.events) for c in chunks] == [10, 10]  # the last 5 are still open
    again = chunk_events(list(reversed(events)), gap_seconds=300, max_events=10, now=now,
                         close_after_seconds=600, flush=False)
    assert [c.id for c in chunks] == [c.id for c in again]


def test_sessions_split_by_project_and_day_but_a_browsing_session_stays_whole(
        tmp_path) -> None:
    repo = tmp_path / "src" / "crm"
    (repo / ".git").mkdir(parents=True)
    (repo / "model").mkdir()
    root = str(tmp_path / "src")

    def save(minute: float, path: str) -> Event:
        return Event.new(ts=T0 + timedelta(minutes=minute), source="files",
                         kind="file.modified", subject=path, attrs={"root": root})

    def visit(minute: float, url: str) -> Event:
        return Event.new(ts=T0 + timedelta(minutes=minute), source="browser",
                         kind="browser.visit", subject=url)

    events = [save(0, f"{repo}/model/score.py"), save(1, f"{root}/notes/todo.md"),
              save(2, f"{repo}/README.md"), save(3, f"{root}/notes/plan.md"),
              visit(0, "https://github.com/acme/crm/pull/4"),
              visit(1, "https://docs.python.org/3/library/re.html"),
              visit(2, "https://github.com/acme/crm/issues/9"),
              Event.new(ts=T0 + timedelta(minutes=4), source="shell", kind="shell.command",
                        subject="make test", attrs={"cwd": str(repo / "model")}),
              Event.new(ts=T0.replace(hour=23, minute=59), source="shell", kind="shell.command",
                        subject="git push", attrs={"cwd": str(repo)}),
              Event.new(ts=T0.replace(hour=23, minute=59) + timedelta(minutes=2),
                        source="shell", kind="shell.command", subject="git log",
                        attrs={"cwd": str(repo)})]
    chunks = chunk_events(events, gap_seconds=3600, max_events=40, now=T0,
                          close_after_seconds=20, flush=True)
    got = sorted((c.source, c.project, len(c.events)) for c in chunks)
    # the git repository and the top folder are projects; the three pages are one
    # session whose project is the repository most of them belong to; midnight splits
    assert got == [("browser", "crm", 3), ("files", "crm", 2), ("files", "notes", 2),
                   ("shell", "crm", 1), ("shell", "crm", 1), ("shell", "crm", 1)]
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)
