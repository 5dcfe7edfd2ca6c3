"""Shell history: the commands bash, zsh, fish and atuin keep, read as they grow.

Every history file has its own place in the collector's one cursor (a JSON string):
a text history by inode, byte offset and a digest of the bytes just before that
offset; atuin's database by row. Events and the cursor that follows them commit
together, a batch at a time, so a crash at any moment re-reads only what was not
committed.

Shells rewrite their history files when they trim them, and a user may truncate or
replace one: a new inode, a smaller file, or other bytes where reading stopped. Then
the file is read again from the start, but collection resumes after the last command
already collected if the bytes that ended it are still there: a plain bash history has
no times, so nothing else could tell its old lines from new ones. Commands with a
recorded time have ids made of (file, time, command, how many times the same command at
the same second came before it in that read), so reading them again stores nothing
twice.

History files are only ever opened for reading.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from collectors import atuin, bash, fish, zsh
from collectors.base import Batch, Event, Sink
from collectors.histfile import Entry

log = logging.getLogger(__name__)

Parser = Callable[[bytes], tuple[list[Entry], int]]
TEXT_PARSERS: dict[str, Parser] = {"bash": bash.parse, "zsh": zsh.parse, "fish": fish.parse}
HOME_FILES = (".bash_history", ".zsh_history", ".zhistory", ".histfile",
              ".local/share/fish/fish_history", ".local/share/atuin/history.db",
              ".atuin/data/history.db")
TAIL = 256  # bytes before the offset whose digest identifies where reading stopped
MAX_COMMAND_CHARS = 16_000
TITLE_CHARS = 120

FileState = dict[str, Any]
Step = tuple[list[Event], FileState]


def detect(path: Path, head: bytes) -> str:
    """Given a history file's path and first bytes, return its format."""
    if head.startswith(atuin.SQLITE_MAGIC) or path.suffix in (".db", ".sqlite", ".sqlite3"):
        return "atuin"
    if head.startswith(fish.CMD) or path.name.endswith("fish_history"):
        return "fish"
    if zsh.HEADER.match(head) or "zsh" in path.name or path.name in (".histfile", ".zhistory"):
        return "zsh"
    return "bash"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def command_event(e: Entry, path: Path, shell: str, mtime: float, offset: int = 0,
                  repeat: int = 0) -> Event:
    """Given a parsed entry of the history at `path` (parsed from byte `offset`), return
    its event. An entry without a recorded time is stamped with the file's mtime: the
    file was last written when the newest of its lines was, which is the best time a
    plain history offers for lines that are new since the last read. `repeat` counts
    the same command at the same second earlier in the same read (keeping both)."""
    cmd = e.command
    attrs: dict[str, object] = {"shell": shell, "history_file": str(path), **e.attrs}
    if e.ts is None:
        attrs["time_from"] = "file mtime"
    if len(cmd) > MAX_COMMAND_CHARS:
        cmd, attrs["truncated"] = cmd[:MAX_COMMAND_CHARS], True
    first = cmd.split("\n", 1)[0]
    title = first if len(first) <= TITLE_CHARS else first[:TITLE_CHARS - 1] + "…"
    key = e.key or (f"{path}#{repeat}" if e.ts is not None else f"{path}@{offset + e.start}")
    return Event.new(ts=e.ts if e.ts is not None else mtime, source="shell",
                     kind="shell.command", subject=cmd, title=title, text=cmd, attrs=attrs,
                     id_extra=key)


@dataclass
class ShellCollector:
    home: Path
    history_files: list[Path] = field(default_factory=list)
    zdotdir: Path | None = None
    data_home: Path | None = None  # $XDG_DATA_HOME, when it is not ~/.local/share
    batch_size: int = 1000
    pending_max_age: float = 86_400.0  # an atuin command that never ended is kept after this
    name: str = "shell"
    poll_seconds: float = 5.0
    _warned: set[str] = field(default_factory=set)

    def paths(self) -> list[Path]:
        """The history files that exist now: the usual ones, then the configured ones."""
        found = [self.home / f for f in HOME_FILES]
        if self.zdotdir is not None:
            found.append(self.zdotdir / ".zsh_history")
        if self.data_home is not None:
            found += [self.data_home / "fish" / "fish_history",
                      self.data_home / "atuin" / "history.db"]
        out: list[Path] = []
        for p in [f for f in found if f.is_file()] + self.history_files:
            if not p.exists():
                self._warn(p, "missing", "shell history file %s (from [collectors.shell] "
                           "history_files) does not exist; it is read once it does", p)
                continue
            real = p.resolve()
            if real not in out:
                out.append(real)
        return out

    def poll(self, sink: Sink) -> int:
        files = self._load(sink)
        new = 0
        for path in self.paths():
            steps = self._read(path, files.get(str(path)))
            while True:
                try:
                    step = next(steps, None)
                except Exception as exc:  # one unreadable history must not stop the others
                    self._warn(path, "read", "skipping shell history %s: %s", path, _why(exc))
                    log.debug("reading %s failed", path, exc_info=True)
                    break
                if step is None:
                    self._warned = {w for w in self._warned if not w.startswith(f"{path}\0")}
                    break
                events, files[str(path)] = step
                cursor = json.dumps({"version": 1, "files": files}, sort_keys=True)
                new += sink.append(Batch(self.name, events, cursor))
        return new

    def start(self, sink: Sink) -> None:
        """Nothing to start: the daemon calls poll() every `poll_seconds`."""

    def stop(self) -> None:
        """Nothing to stop."""

    def _load(self, sink: Sink) -> dict[str, FileState]:
        raw = sink.cursor(self.name)
        if not raw:
            return {}
        try:
            files = json.loads(raw)["files"]
            if isinstance(files, dict):
                return files
        except (ValueError, KeyError, TypeError):
            pass
        log.warning("the shell collector's cursor is unreadable; reading every history again "
                    "(commands with recorded times are not stored twice)")
        return {}

    def _warn(self, path: Path, what: str, msg: str, *args: object) -> None:
        key = f"{path}\0{what}"
        if key in self._warned:  # once per problem, not every few seconds
            log.debug(msg, *args)
        else:
            self._warned.add(key)
            log.warning(msg, *args)

    def _read(self, path: Path, prev: FileState | None) -> Iterator[Step]:
        if not stat.S_ISREG(path.stat().st_mode):  # opening a FIFO would block the poll
            raise OSError("not a regular file")
        with path.open("rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise OSError("not a regular file")
            fmt = detect(path, fh.read(64))
            if fmt != "atuin":
                yield from self._read_text(path, fh, st, fmt, prev)
                return
        yield from self._read_atuin(path, prev if prev and prev.get("format") == "atuin" else {})

    def _read_atuin(self, path: Path, prev: FileState) -> Iterator[Step]:
        now, recheck = time.time(), True
        while True:
            entries, state, more = atuin.read(path, prev, now, self.pending_max_age,
                                              limit=self.batch_size, recheck=recheck)
            state["format"] = "atuin"
            if entries or state != prev:
                yield [command_event(e, path, "atuin", now) for e in entries], state
            if not more:
                return
            prev, recheck = state, False

    def _read_text(self, path: Path, fh: BinaryIO, st: os.stat_result, fmt: str,
                   prev: FileState | None) -> Iterator[Step]:
        parse = TEXT_PARSERS[fmt]
        same = prev is not None and prev.get("format") == fmt
        buf: bytes | None = None
        base = off = 0
        if same and prev is not None and prev.get("inode") == st.st_ino \
                and prev.get("offset", 0) <= st.st_size:
            off = int(prev["offset"])
            keep = min(off, TAIL)
            fh.seek(off - keep)
            buf, base = fh.read(), off - keep
            if _digest(buf[:keep]) != prev.get("tail"):
                buf = None  # rewritten in place
        if buf is None:
            fh.seek(0)
            buf, base = fh.read(), 0
            off = _resume_point(path, buf, parse, prev) if same and prev else 0
        entries, used = parse(buf[off - base:])
        end = off + used
        seen: Counter[tuple[float | None, str]] = Counter()
        repeats = []
        for e in entries:
            repeats.append(seen[e.ts, e.command])
            seen[e.ts, e.command] += 1
        n = self.batch_size
        last = prev.get("last", "") if same and prev else ""
        for i in range(0, max(len(entries), 1), n):
            chunk = entries[i:i + n]
            stop = end if i + n >= len(entries) else off + chunk[-1].end
            if chunk:
                last = _digest(buf[off + chunk[-1].start - base:off + chunk[-1].end - base])
            state = {"format": fmt, "inode": st.st_ino, "offset": stop, "last": last,
                     "tail": _digest(buf[max(stop - TAIL, 0) - base:stop - base])}
            if chunk or state != prev:
                yield [command_event(e, path, fmt, st.st_mtime, off, r)
                       for e, r in zip(chunk, repeats[i:i + n], strict=True)], state


def _resume_point(path: Path, buf: bytes, parse: Parser, prev: FileState) -> int:
    """Where to resume in a rewritten history: after the last place where the bytes that
    ended the previous read (a window of up to TAIL bytes, or failing that the last
    command's own bytes, when a trim kept less than the window) are found again, or at
    0 if they are gone."""
    keep = min(int(prev.get("offset", 0)), TAIL)
    entries, used = parse(buf)
    if keep:
        for b in sorted({e.end for e in entries} | {used}, reverse=True):
            if b >= keep and _digest(buf[b - keep:b]) == prev.get("tail"):
                log.info("shell history %s was rewritten; continuing after the last command "
                         "already collected", path)
                return b
    for e in reversed(entries) if prev.get("last") else ():
        if _digest(buf[e.start:e.end]) == prev["last"]:
            log.info("shell history %s was trimmed; continuing after the last command "
                     "already collected", path)
            return e.end
    log.info("shell history %s was replaced or truncated; reading it again from the start",
             path)
    return 0


def _why(exc: Exception) -> str:
    if isinstance(exc, atuin.NotAtuin):
        return str(exc)
    if isinstance(exc, sqlite3.DatabaseError):
        return f"it is not a readable atuin database ({exc}); is it corrupt?"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return f"{type(exc).__name__}: {exc}"


def build_shell_collector(history_files: list[str], home: Path | None = None) -> ShellCollector:
    """Given [collectors.shell] history_files and the home to look in (the user's own
    when None, where $ZDOTDIR and $XDG_DATA_HOME count too), return the collector."""
    zdotdir = data_home = None
    if home is None:
        home = Path.home()
        zdotdir = Path(os.environ["ZDOTDIR"]) if os.environ.get("ZDOTDIR") else None
        data_home = (Path(os.environ["XDG_DATA_HOME"]) if os.environ.get("XDG_DATA_HOME")
                     else None)
    files = [Path(f).expanduser() for f in history_files]
    return ShellCollector(home=home, history_files=[f if f.is_absolute() else home / f
                                                    for f in files],
                          zdotdir=zdotdir, data_home=data_home)
