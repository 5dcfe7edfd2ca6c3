"""Files: changes under watched roots (watchdog), plus a backfill walk of what is there.

One save is one event: editors save through temp files, renames and bursts of writes,
so paths are debounced until quiet for `settle_seconds`, and editor temp files are
ignored. Text files keep a snippet of their content; binary and huge files are
recorded as metadata only (never read past the first block), and so are files named like
secrets (`FileRules.secret_files`: `.env`, private keys, ...), which are never read.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from collectors.base import Batch, Event, Sink
from collectors.gitignore import GitIgnore
from collectors.secretfiles import SecretFiles, secret_content

if TYPE_CHECKING:
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers.api import BaseObserver

log = logging.getLogger(__name__)

SKIP_DIRS = frozenset({
    ".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv", ".tox", ".nox",
    ".mypy_cache", ".pytest_cache", ".ruff_cache", ".cache", "build", "dist", "target",
    ".gradle", ".idea", ".next", ".parcel-cache", "site-packages", ".eggs", ".terraform",
})
SKIP_FILES = (
    "*.swp", "*.swo", "*.swx", "*~", ".#*", "#*#", "*.tmp", "*.temp", "4913", ".goutputstream-*",
    "*.crdownload", "*.part", ".DS_Store", "*.pyc", "*.lock", "*.sqlite-journal", "*-wal", "*-shm",
)
SNIFF_BYTES = 8192
FALLBACK_SCAN_SECONDS = 60  # how often a root that cannot be watched is scanned


@dataclass
class FileRules:
    max_file_bytes: int = 2_000_000
    snippet_chars: int = 16_000
    exclude: tuple[str, ...] = ()
    exclude_paths: tuple[Path, ...] = ()  # e.g. memoryd's own data dir
    gitignore: bool = True  # skip what a root's git repositories ignore
    secret_files: tuple[str, ...] = ()  # globs of files recorded as metadata only
    _secret: SecretFiles | None = field(default=None, repr=False, compare=False)

    def secret(self, path: Path) -> bool:
        """True if `path` is named like a file holding secrets (never read)."""
        if not self.secret_files:
            return False
        if self._secret is None:
            self._secret = SecretFiles(self.secret_files)
        return self._secret.by_name(str(path))

    def skip_dir(self, path: Path) -> bool:
        if path.name in SKIP_DIRS or path.name.endswith(".egg-info"):
            return True
        if (path / "pyvenv.cfg").exists():  # a virtualenv under any name
            return True
        return any(path == p or p in path.parents for p in self.exclude_paths)

    def skip_file(self, path: Path) -> bool:
        name = path.name
        if any(fnmatch.fnmatch(name, pat) for pat in SKIP_FILES + self.exclude):
            return True
        return any(p in path.parents for p in self.exclude_paths)

    def skip_path(self, path: Path, root: Path) -> bool:
        """True if `path` (under `root`) or one of its folders is ignored."""
        try:
            rel = path.relative_to(root)
        except ValueError:
            return True
        parent = root
        for part in rel.parts[:-1]:
            parent = parent / part
            if part in SKIP_DIRS or part.endswith(".egg-info"):
                return True
        return self.skip_file(path) or any(p in path.parents or p == path
                                           for p in self.exclude_paths)


def read_file_event(path: Path, rules: FileRules, kind: str = "file.modified",
                    root: Path | None = None) -> Event | None:
    """Return the event for the file at `path` now, or None if it vanished or is unreadable."""
    try:
        st = path.stat()
    except OSError:
        return None
    if not path.is_file():
        return None
    attrs: dict[str, object] = {"size": st.st_size}
    if root is not None:
        attrs["root"] = str(root)
    text = ""
    if rules.secret(path):
        attrs["secret_file"] = True  # metadata only: the content is never read
    elif st.st_size > rules.max_file_bytes:
        attrs["skipped"] = f"larger than {rules.max_file_bytes} bytes"
    else:
        try:
            with path.open("rb") as fh:
                head = fh.read(SNIFF_BYTES)
                if _is_binary(head):
                    attrs["binary"] = True
                else:
                    data = head + fh.read(max(rules.snippet_chars * 4 - len(head), 0))
                    text = data.decode("utf-8", errors="replace")
                    if len(text) > rules.snippet_chars:
                        text, attrs["truncated"] = text[:rules.snippet_chars], True
                    if rules.secret_files and secret_content(text):
                        text, attrs["secret_file"] = "", True
        except OSError as exc:
            log.info("cannot read %s (%s); recording it without content", path, exc.strerror)
            attrs["unreadable"] = exc.strerror or str(exc)
    return Event.new(ts=st.st_mtime_ns / 1e9, source="files", kind=kind, subject=str(path),
                     title=path.name, text=text, attrs=attrs, id_extra=str(st.st_size))


def _is_binary(head: bytes) -> bool:
    if b"\x00" in head:
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # a multi-byte character cut by the sniff window is still text
        return exc.start < len(head) - 4
    return False


@dataclass
class FilesCollector:
    roots: list[Path]
    rules: FileRules = field(default_factory=FileRules)
    settle_seconds: float = 1.0
    name: str = "files"
    poll_seconds: float = 3600.0  # the live watch does the work; this is a safety net
    _observer: BaseObserver | None = None
    _pending: dict[str, float] = field(default_factory=dict)  # path -> last seen
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _flusher: threading.Thread | None = None
    _sink: Sink | None = None
    _handler: FileSystemEventHandler | None = None
    _unwatched: list[Path] = field(default_factory=list)
    _git: GitIgnore = field(default_factory=GitIgnore)
    _moves: dict[str, str] = field(default_factory=dict)  # destination -> source
    _fallback: list[Path] = field(default_factory=list)  # roots scanned, not watched
    # Changes the sink refused (a full or read-only journal): sent first at every flush
    # until it takes them, so a save, move or delete is never dropped on the floor.
    _unsent: list[Event] = field(default_factory=list)
    _refused: bool = False

    # -- backfill -------------------------------------------------------------------

    def walk(self) -> Iterator[tuple[Path, Path]]:
        for root in self.roots:
            if not root.is_dir():
                log.warning("watched root %s does not exist; create it or remove it from "
                            "[collectors.files] roots", root)
                continue
            for dirpath, dirnames, filenames in os.walk(root, onerror=self._walk_error):
                here = Path(dirpath)
                dirs = [here / d for d in sorted(dirnames) if not self.rules.skip_dir(here / d)]
                files = [here / f for f in sorted(filenames)
                         if not self.rules.skip_file(here / f) and not (here / f).is_symlink()]
                ignored = self._git.ignored(dirs + files) if self.rules.gitignore else set()
                dirnames[:] = [d.name for d in dirs if d not in ignored]
                for path in files:
                    if path not in ignored:
                        yield root, path

    @staticmethod
    def _walk_error(exc: OSError) -> None:
        log.info("skipping %s: %s", exc.filename, exc.strerror)

    def poll(self, sink: Sink) -> int:
        """Backfill: record every file under the roots that the journal has not seen."""
        new = 0
        batch: list[tuple[Path, Path]] = []
        for item in self.walk():
            batch.append(item)
            if len(batch) >= 256:
                new += self._backfill(sink, batch)
                batch = []
        new += self._backfill(sink, batch, final=True)
        return new

    def _backfill(self, sink: Sink, items: list[tuple[Path, Path]], final: bool = False) -> int:
        stats: list[tuple[Path, Path, str]] = []
        for root, path in items:
            try:
                st = path.stat()
            except OSError:
                continue
            probe = Event.new(ts=st.st_mtime_ns / 1e9, source="files", kind="file.modified",
                              subject=str(path), id_extra=str(st.st_size))
            stats.append((root, path, probe.id))
        known = sink.known([s[2] for s in stats]) if stats else set()
        events = [ev for root, path, eid in stats if eid not in known
                  if (ev := read_file_event(path, self.rules, root=root)) is not None]
        cursor = json.dumps({"backfilled_at": time.time()}) if final else None
        if events or cursor:
            return sink.append(Batch(self.name, events, cursor))
        return 0

    # -- live -----------------------------------------------------------------------

    def start(self, sink: Sink) -> None:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        collector = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.is_directory or event.event_type in ("opened", "closed_no_write"):
                    return
                # Whether a path was changed or deleted is decided when it settles, by
                # looking: editors delete and re-create files within one save.
                if event.event_type == "moved":
                    collector._note_move(os.fsdecode(event.src_path),
                                         os.fsdecode(event.dest_path))
                else:
                    collector._note(os.fsdecode(event.src_path))

        self._sink = sink
        self._handler = Handler()
        self._observer = Observer()
        self._unwatched = []
        self._fallback = []
        # Started first, so that scheduling a root starts its inotify watches right away
        # and a shortage of watches surfaces here, where it is handled, per root.
        self._observer.start()
        for root in self.roots:
            if root.is_dir():
                self._watch(root)
            else:
                self._unwatched.append(root)
                log.warning("watched root %s does not exist yet; it is watched once it does",
                            root)
        self._stop.clear()
        self._flusher = threading.Thread(target=self._flush_loop, name="files-flush",
                                         daemon=True)
        self._flusher.start()

    def _watch(self, root: Path) -> None:
        assert self._observer is not None and self._handler is not None, "start() first"
        try:
            self._observer.schedule(self._handler, str(root), recursive=True)
        except OSError as exc:
            self._fallback.append(root)
            log.warning("cannot watch %s (%s). If inotify watches ran out, raise "
                        "fs.inotify.max_user_watches (sysctl); until then memoryd scans "
                        "this root every %d s instead", root, exc, FALLBACK_SCAN_SECONDS)

    def _watch_new_roots(self) -> None:
        """Start watching (and backfill) roots that were missing and now exist."""
        for root in [r for r in self._unwatched if r.is_dir()]:
            self._unwatched.remove(root)
            log.info("watched root %s appeared: watching it", root)
            self._watch(root)
            if self._sink is not None:
                FilesCollector([root], self.rules).poll(self._sink)

    def _accept(self, path: str) -> str | None:
        """`path` if it is under a root and not skipped by the rules, else None."""
        p = Path(path)
        root = next((r for r in self.roots if r in p.parents), None)
        if root is None or self.rules.skip_path(p, root):
            return None
        return path

    def _note(self, path: str) -> str | None:
        """Queue `path` to be looked at once it settles; return it, or None if ignored."""
        if self._accept(path) is None:
            return None
        with self._lock:
            self._pending[path] = time.monotonic()
        return path

    def _note_move(self, src: str, dest: str) -> None:
        """Queue both ends of a move at once, so a flush never sees one end without the
        other (a source flushed alone would read as a deletion)."""
        s, d = self._accept(src), self._accept(dest)
        with self._lock:
            now = time.monotonic()
            for path in (s, d):
                if path:
                    self._pending[path] = now
            if s and d:  # a real move, not an editor's temp-file dance
                self._moves[d] = s

    def _flush_loop(self) -> None:
        ticks = 0
        while not self._stop.wait(min(self.settle_seconds / 2, 0.25)):
            ticks += 1
            try:
                self.flush()
                if ticks % 20 == 0 and self._unwatched:
                    self._watch_new_roots()
                if ticks % (FALLBACK_SCAN_SECONDS * 4) == 0 and self._fallback and self._sink:
                    FilesCollector(list(self._fallback), self.rules).poll(self._sink)
            except Exception:  # a bad file must not stop watching
                log.exception("files collector: flushing changes failed; will retry")

    def flush(self, force: bool = False) -> int:
        now = time.monotonic()
        with self._lock:
            ready = [path for path, t in self._pending.items()
                     if force or now - t >= self.settle_seconds]
            # a move's source waits for its destination: they are recorded together
            waiting = {src for dest, src in self._moves.items() if dest not in ready}
            ready = [path for path in ready if path not in waiting]
            for path in ready:
                self._pending.pop(path, None)
            moves = {dest: self._moves.pop(dest) for dest in ready if dest in self._moves}
        if self.rules.gitignore and ready:
            ignored = {str(p) for p in self._git.ignored(Path(x) for x in ready)}
            ready = [x for x in ready if x not in ignored]
        events: list[Event] = []
        moved_away = {src for dest, src in moves.items() if not Path(src).exists()}
        for path in ready:
            p = Path(path)
            if path in moved_away:
                continue  # recorded as the destination's file.moved
            src = moves.get(path)
            kind = "file.moved" if src in moved_away else "file.modified"
            ev = read_file_event(p, self.rules, kind=kind, root=next(
                (r for r in self.roots if r in p.parents), None))
            if ev is not None and kind == "file.moved":
                ev.attrs["moved_from"] = src
            if ev is not None:
                events.append(ev)
            elif not p.exists():
                events.append(Event.new(ts=time.time(), source="files", kind="file.deleted",
                                        subject=path, title=p.name))
        return self._send(events)

    def _send(self, events: list[Event]) -> int:
        """Hand `events`, after any the sink refused before, to the sink; keep them all
        queued if it refuses again (it says why; the next flush retries)."""
        with self._lock:
            events, self._unsent = self._unsent + events, []
        if not events or self._sink is None:
            return 0
        try:
            return self._sink.append(Batch(self.name, events))
        except Exception as exc:
            with self._lock:
                first = not self._unsent and not self._refused
                self._unsent = events + self._unsent
                self._refused = True
            if first:
                log.warning("files collector: the journal refused %d change(s) (%s); they stay "
                            "queued and are retried until it takes them", len(events), exc)
            return 0
        finally:
            if self._refused and not self._unsent:
                self._refused = False
                log.info("files collector: the journal takes changes again")

    def stop(self) -> None:
        self._stop.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
        if self._flusher is not None:
            self._flusher.join(timeout=5)
        self.flush(force=True)
