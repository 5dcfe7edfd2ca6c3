"""Where collectors are registered: config in, collector instances out.

A new source is one module in `collectors/` and one entry in `BUILDERS`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from collectors.base import Collector, Sink
from collectors.browser import build_browser_collector
from collectors.files import FileRules, FilesCollector
from collectors.shell import build_shell_collector
from daemon.config import Config

log = logging.getLogger(__name__)


def _files(cfg: Config) -> Collector | None:
    fc = cfg.collectors.files
    if not fc.enabled:
        return None
    roots = [Path(r).expanduser().resolve() for r in fc.roots]
    rules = FileRules(max_file_bytes=fc.max_file_bytes, snippet_chars=fc.snippet_chars,
                      exclude=fc.exclude, exclude_paths=(cfg.data_path,),
                      secret_files=cfg.privacy.secret_files)
    return FilesCollector(roots=roots, rules=rules, settle_seconds=fc.settle_seconds)


def _browser(cfg: Config) -> Collector | None:
    bc = cfg.collectors.browser
    return build_browser_collector(list(bc.history_files)) if bc.enabled else None


def _shell(cfg: Config) -> Collector | None:
    sc = cfg.collectors.shell
    return build_shell_collector(list(sc.history_files)) if sc.enabled else None


BUILDERS: dict[str, Callable[[Config], Collector | None]] = {
    "files": _files,
    "browser": _browser,
    "shell": _shell,
}


def build_collectors(cfg: Config) -> list[Collector]:
    out = []
    for build in BUILDERS.values():
        c = build(cfg)
        if c is not None:
            out.append(c)
    return out


@dataclass
class CollectorHealth:
    name: str
    runs: int = 0
    last_run: str | None = None
    last_new: int = 0
    total_new: int = 0
    last_error: str | None = None
    last_error_at: str | None = None


class CollectorRuns:
    """Polls collectors and remembers, for `memoryd status`, how each one is doing."""

    def __init__(self, collectors: list[Collector]) -> None:
        self.collectors = collectors
        self._health = {c.name: CollectorHealth(c.name) for c in collectors}

    def poll(self, c: Collector, sink: Sink) -> int:
        h = self._health[c.name]
        now = datetime.now(UTC).isoformat()
        try:
            new = c.poll(sink)
        except Exception as exc:
            h.last_error, h.last_error_at = f"{type(exc).__name__}: {exc}", now
            log.warning("collector %s failed: %s (will retry)", c.name, exc)
            return 0
        finally:
            h.runs += 1
            h.last_run = now
        h.last_new = new
        h.total_new += new
        return new

    def snapshot(self) -> list[dict[str, object]]:
        return [asdict(h) for h in self._health.values()]
