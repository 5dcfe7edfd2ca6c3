"""Browser history: one event per page visit, from every Chromium-family, Firefox and
Safari profile on the machine, plus any history file listed in the config.

A browser never notices memoryd: its database (and journal or WAL) is copied into a
private temp dir and the copy is read, so a running browser's locks don't matter and
its files are never written. A database unchanged since the last poll is not copied
again. Each database resumes after the last visit id it had (the cursor, committed with
the events), and event ids are stable, so restarts and replays add nothing twice.
A database that cannot be read this round (locked, half-copied, corrupt, a schema the
reader does not know) is logged and skipped; the others carry on and it is retried.

Profiles are found by each reader module's `find`: every Chromium-family user-data dir
(Chrome, Chromium, Brave, Edge, Vivaldi, Opera; Linux native, snap, flatpak; macOS),
every Firefox profile in profiles.ini, Safari's History.db. Windows is not searched yet:
list its files in [collectors.browser] history_files (%LOCALAPPDATA%\\Google\\Chrome\\
User Data\\Default\\History, %APPDATA%\\Mozilla\\Firefox\\Profiles\\<p>\\places.sqlite).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from collectors import chromium, firefox, safari
from collectors.base import Batch, Event, Sink

log = logging.getLogger(__name__)


class HistoryFormat(Protocol):
    """What a reader module (collectors/chromium.py, ...) declares about its database."""

    FAMILY: str
    TABLES: dict[str, frozenset[str]]  # tables and columns it must have
    VISITS_TABLE: str
    TIME_COLUMN: str
    VISITS_SQL: str  # (after id, limit) -> id, url, title, raw time, raw transition, hidden

    def find(self, where: Callable[[str], Path]) -> Iterator[tuple[Path, str, str]]:
        """(database, browser, profile) per profile; `where` resolves home-relative paths."""

    def to_utc(self, raw: float) -> datetime: ...

    def transition(self, raw: int | None) -> str | None: ...


FORMATS: tuple[HistoryFormat, ...] = (chromium, firefox, safari)
SIDECARS = ("-wal", "-journal")


@dataclass(frozen=True)
class HistorySource:
    path: Path  # the database file
    browser: str | None  # chrome, brave, firefox, safari, ...; None: named after its format
    profile: str  # the profile's display name
    family: str | None = None  # chromium, firefox, safari; None: detected from its tables


class _Skip(Exception):  # a database that cannot be read this round; the message says why
    pass


def discover(home: Path, config_home: Path | None = None) -> list[HistorySource]:
    """Return the history database of every browser profile found under `home`."""
    config_home = config_home or home / ".config"

    def where(rel: str) -> Path:  # a path relative to home; ~/.config follows XDG
        return config_home / rel[8:] if rel.startswith(".config/") else home / rel

    return [HistorySource(db, browser, profile, fmt.FAMILY)
            for fmt in FORMATS for db, browser, profile in fmt.find(where)]


def _signature(db: Path) -> tuple[tuple[int, int], ...]:
    """Size and mtime of the database and its sidecars ((-1, -1) for one that is absent)."""
    out = []
    for suffix in ("", *SIDECARS):
        try:
            st = os.stat(f"{db}{suffix}")
            out.append((st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            out.append((-1, -1))
    return tuple(out)


def _snapshot(db: Path, into: Path) -> tuple[Path, tuple[tuple[int, int], ...]]:
    """Copy `db` with its WAL or journal into `into`; return the copy and the signature
    of what was copied. Sidecars go first: a journal copied before the main file rolls
    back to a consistent state whatever commits meanwhile, and WAL frames copied first
    still apply over a main file a checkpoint has since brought forward."""
    copy = into / db.name
    for _ in range(3):
        before = _signature(db)
        for suffix in (*SIDECARS, ""):
            try:
                shutil.copyfile(f"{db}{suffix}", f"{copy}{suffix}")
            except FileNotFoundError:
                if not suffix:
                    raise
                Path(f"{copy}{suffix}").unlink(missing_ok=True)
        if _signature(db) == before:
            return copy, before
    raise _Skip("it kept changing while being copied")


def _detect(con: sqlite3.Connection, family: str | None) -> HistoryFormat:
    """Return the reader for the database on `con`; raise _Skip if its schema is not one."""
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if family is not None:
        fmt = next(f for f in FORMATS if f.FAMILY == family)
    else:
        # the closest format, so a changed schema is reported as one, not as a stranger
        fmt = max(FORMATS, key=lambda f: len(set(f.TABLES) & tables))
        if not set(fmt.TABLES) & tables:
            raise _Skip("it is not a Chromium, Firefox or Safari history database (tables: "
                        f"{', '.join(sorted(tables)[:12]) or 'none'})")
    for table, columns in fmt.TABLES.items():
        have = {r[1] for r in con.execute(f'PRAGMA table_info("{table}")')}
        missing = sorted(columns - have) if have else [f"table {table}"]
        if missing:
            raise _Skip(f"its {fmt.FAMILY} history schema changed ({table}: no "
                        f"{', '.join(missing)}); memoryd needs an update to read it")
    return fmt


@dataclass
class BrowserCollector:
    history_files: list[Path] = field(default_factory=list)
    home: Path | None = None  # None: discover nothing, read only history_files
    config_home: Path | None = None
    page_size: int = 1000
    name: str = "browser"
    poll_seconds: float = 30.0
    _read_at: dict[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    _problems: dict[str, str] = field(default_factory=dict)

    def sources(self) -> list[HistorySource]:
        found = discover(self.home, self.config_home) if self.home is not None else []
        found += [HistorySource(p, None, p.parent.name) for p in self.history_files]
        unique: dict[Path, HistorySource] = {}
        for src in found:  # a symlinked profile, or a listed file that was found anyway
            unique.setdefault(src.path.resolve(), src)
        return list(unique.values())

    def start(self, sink: Sink) -> None:  # history files are polled, not watched
        pass

    def stop(self) -> None:
        pass

    def poll(self, sink: Sink) -> int:
        """Read every history database's new visits into `sink`; return how many were new."""
        try:
            sources = self.sources()
            cursors = self._load_cursors(sink)
        except Exception:  # poll must never raise
            log.exception("browser collector: finding history databases failed; will retry")
            return 0
        new = 0
        for src in sources:
            key = str(src.path)
            try:
                new += self._poll_one(src, sink, cursors)
            except _Skip as exc:
                self._problem(key, f"skipping {src.path} this round: {exc}")
            except FileNotFoundError:
                self._problem(key, f"skipping {src.path}: it does not exist (yet)")
            except PermissionError as exc:
                self._problem(key, f"cannot read {src.path} ({exc.strerror}): give memoryd "
                                   "read access (on macOS, Full Disk Access); will retry")
            except (OSError, sqlite3.Error) as exc:
                self._problem(key, f"skipping {src.path} this round: cannot read it as a "
                                   f"SQLite database ({exc}); will retry")
            except Exception as exc:
                self._problem(key, f"skipping {src.path} this round: {exc!r}")
            else:
                if self._problems.pop(key, None) is not None:
                    log.info("%s is readable again", src.path)
        return new

    def problems(self) -> dict[str, str]:
        """The history databases that cannot be read now, and why (for the daemon's status)."""
        return dict(self._problems)

    def _problem(self, key: str, message: str) -> None:
        # say it once; a database that stays broken is not worth a warning every 30 s
        log.log(logging.DEBUG if self._problems.get(key) == message else logging.WARNING,
                message)
        self._problems[key] = message

    def _load_cursors(self, sink: Sink) -> dict[str, dict[str, Any]]:
        raw = sink.cursor(self.name)
        try:
            dbs = json.loads(raw)["dbs"] if raw else {}
            if isinstance(dbs, dict):
                return dbs
        except (ValueError, KeyError, TypeError):
            pass
        log.warning("browser cursor %r is unreadable; reading history from the start "
                    "(visits already stored are not stored twice)", (raw or "")[:200])
        return {}

    def _poll_one(self, src: HistorySource, sink: Sink,
                  cursors: dict[str, dict[str, Any]]) -> int:
        key = str(src.path)
        if self._read_at.get(key) == _signature(src.path):
            return 0
        with tempfile.TemporaryDirectory(prefix="memoryd-browser-") as tmp:
            copy, signature = _snapshot(src.path, Path(tmp))
            con = sqlite3.connect(copy, timeout=0, isolation_level=None)
            try:
                new = self._read(con, src, sink, cursors)
            finally:
                con.close()
        self._read_at[key] = signature
        return new

    def _read(self, con: sqlite3.Connection, src: HistorySource, sink: Sink,
              cursors: dict[str, dict[str, Any]]) -> int:
        key = str(src.path)
        fmt = _detect(con, src.family)
        browser = src.browser or fmt.FAMILY
        state = cursors.get(key, {})
        after, when = self._resume_after(con, fmt, state, src.path)
        committed, new = state, 0
        while True:
            rows = con.execute(fmt.VISITS_SQL, (after, self.page_size)).fetchall()
            if not rows and after == state.get("id", 0):
                break  # nothing new and the cursor stands
            if rows:
                after, when = int(rows[-1][0]), rows[-1][3]
            cursors[key] = {"id": after, "t": when}
            events = [e for row in rows if (e := self._event(row, fmt, browser, src)) is not None]
            try:
                new += sink.append(Batch(self.name, events, json.dumps({"dbs": cursors})))
            except Exception as exc:
                cursors[key] = committed  # later batches must not claim what was not stored
                raise _Skip(f"the journal did not take its visits ({exc})") from exc
            committed = cursors[key]
            if len(rows) < self.page_size:
                break
        return new

    @staticmethod
    def _resume_after(con: sqlite3.Connection, fmt: HistoryFormat, state: dict[str, Any],
                      path: Path) -> tuple[int, Any]:
        """Return the visit id (and its raw time) to read after: the cursor's, unless that
        visit is gone or changed (history cleared, database recreated; Firefox reuses
        ids), then the last visit older than it."""
        last, when = int(state.get("id") or 0), state.get("t")
        if last <= 0:
            return 0, None
        table, column = fmt.VISITS_TABLE, fmt.TIME_COLUMN
        row = con.execute(f"SELECT {column} FROM {table} WHERE id = ?", (last,)).fetchone()
        if row is not None and row[0] == when:
            return last, when
        back = con.execute(f"SELECT id, {column} FROM {table} WHERE id < ? AND {column} <= ?"
                           " ORDER BY id DESC LIMIT 1", (last, when)).fetchone()
        log.info("history in %s was cleared or rewritten since visit %d; reading again "
                 "after visit %s", path, last, back[0] if back else 0)
        return (int(back[0]), back[1]) if back else (0, None)

    @staticmethod
    def _event(row: tuple[Any, ...], fmt: HistoryFormat, browser: str,
               src: HistorySource) -> Event | None:
        visit_id, url, title, raw_time, raw_kind, hidden = row
        if (hidden or not raw_time or raw_time < 0 or not isinstance(url, str)
                or not url[:8].lower().startswith(("http://", "https://"))):
            return None  # hops nobody saw, no time, or chrome://, about:, file:, data:, ...
        try:
            when = fmt.to_utc(raw_time)
        except (OverflowError, ValueError, TypeError):
            log.debug("visit %s in %s has an impossible time %r", visit_id, src.path, raw_time)
            return None
        attrs: dict[str, Any] = {"browser": browser, "profile": src.profile, "visit_id": visit_id}
        if (kind := fmt.transition(raw_kind)) is not None:
            attrs["transition"] = kind
        title = title if isinstance(title, str) else ""
        return Event.new(ts=when, source="browser", kind="browser.visit", subject=url,
                         title=title, text=title, attrs=attrs,
                         id_extra=f"{browser}:{src.path.parent}:{visit_id}")


def build_browser_collector(history_files: list[str], home: Path | None = None,
                            discover: bool = True) -> BrowserCollector:
    """Given [collectors.browser] history_files, return a collector that reads them and
    every browser profile found under `home` (default: the user's home directory)."""
    files = [Path(f).expanduser() for f in history_files]
    xdg = os.environ.get("XDG_CONFIG_HOME") if home is None else None
    home = home or Path.home()
    config_home = Path(xdg) if xdg else home / ".config"
    return BrowserCollector(history_files=files, home=home if discover else None,
                            config_home=config_home)
