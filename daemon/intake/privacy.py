"""What never reaches the journal: excluded paths, domains and commands, and everything
collected while the user has paused memoryd.

`PrivacyGate` wraps the journal as the collectors' sink. It drops excluded events before
they are stored, and while paused drops every event but still lets cursors advance, so
what happened during a pause is never collected later. The pause is a file in the data
dir, so it survives a restart and the CLI, the API and the tray share it.

Files named like secrets (`[privacy] secret_files`) pass as metadata only: path, kind,
time and size, never content, whoever sends them (the files collector does not even read
them; an event pushed through the API loses its text here).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from collectors.base import Batch, Event, Sink
from collectors.secretfiles import SecretFiles, secret_content
from daemon.config import Config
from daemon.errors import ConfigError

log = logging.getLogger(__name__)


class Exclusions:
    """Excluded paths (globs, "~" allowed: "~/private/*", "*.kdbx"), domains ("bank.example"
    also excludes its subdomains) and commands (regular expressions). Patterns are
    prepared once: this runs for every event."""

    def __init__(self, paths: tuple[str, ...] = (), domains: tuple[str, ...] = (),
                 commands: tuple[str, ...] = ()) -> None:
        expanded = [str(Path(p).expanduser()) for p in paths]
        globs = expanded + [p.rstrip("/") + "/*" for p in expanded]
        # one compiled pattern, not fnmatch() per glob: this runs for every event
        self._paths = re.compile("|".join(fnmatch.translate(g) for g in globs)) if globs \
            else None
        self._domains = tuple(d.lower().lstrip(".") for d in domains)
        self._commands = [re.compile(c) for c in commands]

    def excludes(self, ev: Event) -> bool:
        # By what the subject is, not only by who collected it: events pushed through the
        # API (an editor, an agent) name paths, URLs and commands too.
        subject = ev.subject
        if self._paths and (ev.source == "files" or subject.startswith(("/", "~"))):
            if self._paths.match(subject):
                return True
        if self._domains and (ev.source == "browser" or subject.startswith(_URL_SCHEMES)):
            host = (urlsplit(subject).hostname or "").lower()
            if any(host == d or host.endswith("." + d) for d in self._domains):
                return True
        if self._commands and (ev.source == "shell" or ev.kind.endswith(".command")):
            if any(p.search(subject) for p in self._commands):
                return True
        return False


_URL_SCHEMES = ("http://", "https://", "ws://", "wss://", "ftp://")
_FILE_METADATA = frozenset({"size", "root", "moved_from", "binary", "mode", "mtime"})


class PauseState:
    """The pause flag, kept in <data_dir>/paused.json."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "paused.json"
        self._cached: tuple[int | None, dict[str, object] | None] = (None, None)

    def paused(self) -> dict[str, object] | None:
        # Asked for every batch: a stat() when nothing changed, a read only when it did.
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError:
            self._cached = (None, None)
            return None
        if self._cached[0] == mtime:
            state = self._cached[1]
        else:
            try:
                state = json.loads(self.path.read_text())
            except (OSError, ValueError):
                return None
            self._cached = (mtime, state)
        if state is None:
            return None
        until = state.get("until")
        if isinstance(until, (int, float)) and until <= time.time():
            self.resume()
            return None
        return state

    def pause(self, minutes: float | None = None, reason: str = "") -> dict[str, object]:
        state: dict[str, object] = {"since": time.time(), "reason": reason,
                                    "until": time.time() + minutes * 60 if minutes else None}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self.path)
        log.info("collection paused%s", f" for {minutes:g} min" if minutes else "")
        return state

    def resume(self) -> None:
        if self.path.exists():
            self.path.unlink(missing_ok=True)
            log.info("collection resumed")


class PrivacyGate:
    """A Sink in front of the journal that honours exclusions and pause.

    It also applies history horizons: a first read of years of browser or shell history
    would keep the models busy for hours, so sources may name how many days back to take.
    """

    def __init__(self, sink: Sink, exclusions: Exclusions, pause: PauseState,
                 horizon_days: dict[str, int] | None = None,
                 secret_files: tuple[str, ...] = ()) -> None:
        self.sink = sink
        self.exclusions = exclusions
        self.secret_files = SecretFiles(secret_files) if secret_files else None
        self.pause = pause
        self.horizon_days = {k: v for k, v in (horizon_days or {}).items() if v > 0}
        self.dropped = 0

    def _too_old(self, ev: Event) -> bool:
        days = self.horizon_days.get(ev.source)
        return days is not None and ev.ts.timestamp() < time.time() - days * 86400

    def append(self, batch: Batch) -> int:
        if self.pause.paused():
            kept: list[Event] = []
        else:
            kept = [self._metadata_only(e) for e in batch.events
                    if not self.exclusions.excludes(e) and not self._too_old(e)]
        self.dropped += len(batch.events) - len(kept)
        if not kept and batch.cursor is None:
            return 0
        return self.sink.append(replace(batch, events=kept))

    def _metadata_only(self, ev: Event) -> Event:
        """`ev` without content if it names a file holding secrets (by name, or by content:
        a service-account key or kubeconfig under any name); else `ev` as it is."""
        if self.secret_files is None or not (ev.source == "files"
                                             or ev.subject.startswith(("/", "~"))):
            return ev
        if not (self.secret_files.by_name(ev.subject) or secret_content(ev.text)):
            return ev
        if not ev.text and ev.attrs.get("secret_file"):
            return ev  # the files collector already left it unread
        attrs = {k: v for k, v in ev.attrs.items() if k in _FILE_METADATA}
        return replace(ev, text="", attrs={**attrs, "secret_file": True})

    def known(self, ids: list[str]) -> set[str]:
        return self.sink.known(ids)

    def cursor(self, collector: str) -> str | None:
        return self.sink.cursor(collector)


def gate_for(cfg: Config, sink: Sink) -> PrivacyGate:
    """Build the gate from the config; raise ConfigError if a command pattern is invalid."""
    p = cfg.privacy
    for pattern in p.exclude_commands:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"[privacy] exclude_commands: {pattern!r} is not a valid "
                              f"regular expression ({exc})") from None
    return PrivacyGate(sink, Exclusions(p.exclude_paths, p.exclude_domains, p.exclude_commands),
                       PauseState(cfg.data_path),
                       {"browser": cfg.collectors.browser.history_days,
                        "shell": cfg.collectors.shell.history_days},
                       secret_files=p.secret_files)
