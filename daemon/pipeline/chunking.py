"""Group events into activity sessions: runs of one source and one project (a git
repository, a top folder, a web site) with no long pause inside.

A session is what a person would call one piece of work: editing files in one repo,
reading pages on one site, running commands in one checkout. Events of different
projects that interleave in time become separate chunks, so a summary (and the
identifiers it must keep) stays about one thing.
"""

from __future__ import annotations

import functools
import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from collectors.base import Event

CODE_HOSTS = ("github.com", "gitlab.com", "bitbucket.org", "codeberg.org")


@dataclass(frozen=True)
class Chunk:
    events: tuple[Event, ...]

    @property
    def id(self) -> str:
        """Stable: the same events always make the same memory id."""
        h = hashlib.sha256("\x1f".join(sorted(e.id for e in self.events)).encode())
        return "m" + h.hexdigest()[:31]

    @property
    def start(self) -> datetime:
        return self.events[0].ts

    @property
    def end(self) -> datetime:
        return self.events[-1].ts

    @property
    def source(self) -> str:
        return self.events[0].source

    @property
    def project(self) -> str:
        """The project most of the chunk's events belong to ("" if none)."""
        counts = Counter(project_of(e) for e in self.events)
        counts.pop("", None)
        return counts.most_common(1)[0][0] if counts else ""


@functools.lru_cache(maxsize=4096)
def _git_root(folder: str, stop: str) -> str | None:
    """The nearest folder at or above `folder` (not above `stop`) holding a .git entry."""
    p = PurePosixPath(folder)
    while True:
        try:
            if (Path(p) / ".git").exists():
                return str(p)
        except OSError:
            return None
        if str(p) in (stop, "/", ".") or p.parent == p:
            return None
        p = p.parent


def _path_project(path: str, root: str) -> str:
    p = PurePosixPath(path)
    git = _git_root(str(p.parent), root.rstrip("/") or "/")
    if git:
        return PurePosixPath(git).name
    if root:
        try:
            rel = p.relative_to(root)
        except ValueError:
            rel = None
        if rel is not None and len(rel.parts) > 1:
            return rel.parts[0]
    return p.parent.name


def project_of(ev: Event) -> str:
    """Given an event, return its project: the git repository or top folder of a file
    (under the collector's root), the repository or checkout a shell command ran in (when
    the history recorded its cwd), a code host's repository or the site of a page."""
    if ev.source == "files":
        return _path_project(ev.subject, str(ev.attrs.get("root") or ""))
    if ev.source == "shell":
        cwd = ev.attrs.get("cwd")
        if isinstance(cwd, str) and cwd.startswith("/"):
            git = _git_root(cwd, "/")
            return PurePosixPath(git).name if git else PurePosixPath(cwd).name
        return ""
    if ev.source == "browser":
        try:
            parts = urlsplit(ev.subject)
        except ValueError:
            return ""
        host = (parts.hostname or "").removeprefix("www.")
        segs = [s for s in parts.path.split("/") if s]
        if host in CODE_HOSTS and len(segs) >= 2:
            return segs[1]
        return host
    return ""


def _group(ev: Event) -> str:
    # A browsing session hops between sites (the PR, the ticket, the docs) for one piece of
    # work: it stays one chunk, split by pauses only; its project is its commonest site.
    return "" if ev.source == "browser" else project_of(ev)


def chunk_events(events: Iterable[Event], *, gap_seconds: float, max_events: int,
                 now: datetime, close_after_seconds: float, flush: bool,
                 tz: tzinfo = UTC) -> list[Chunk]:
    """Return the closed chunks among `events`.

    Events are split by source and project (`project_of`; browser visits by source
    only), then by pauses longer than `gap_seconds`, at `max_events`, and at midnight in
    `tz` (so each chunk belongs to one day digest). A chunk is closed (ready to summarize)
    when it is full, when more activity follows it, when its last event is older than
    `close_after_seconds`, or when `flush` is set (ingest --once).
    """
    by_source: dict[tuple[str, str], list[Event]] = {}
    for ev in sorted(events, key=lambda e: (e.ts, e.id)):
        by_source.setdefault((ev.source, _group(ev)), []).append(ev)
    closed: list[Chunk] = []
    for evs in by_source.values():
        current: list[Event] = []
        runs: list[list[Event]] = []
        for ev in evs:
            if current and ((ev.ts - current[-1].ts).total_seconds() > gap_seconds
                            or len(current) >= max_events
                            # each chunk lies in one (local) day: one day digest
                            or ev.ts.astimezone(tz).date()
                            != current[-1].ts.astimezone(tz).date()):
                runs.append(current)
                current = []
            current.append(ev)
        if current:
            runs.append(current)
        for i, run in enumerate(runs):
            last = i == len(runs) - 1
            quiet = (now - run[-1].ts).total_seconds() >= close_after_seconds
            if flush or not last or len(run) >= max_events or quiet:
                closed.append(Chunk(tuple(run)))
    closed.sort(key=lambda c: (c.start, c.id))
    return closed
