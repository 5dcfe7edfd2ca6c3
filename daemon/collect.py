"""Where collectors are registered: config in, collector instances out.

A new source is one module in `collectors/` and one entry in `BUILDERS`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from collectors.base import Collector
from collectors.files import FileRules, FilesCollector
from daemon.config import Config

log = logging.getLogger(__name__)


def _files(cfg: Config) -> Collector | None:
    fc = cfg.collectors.files
    if not fc.enabled:
        return None
    roots = [Path(r).expanduser().resolve() for r in fc.roots]
    rules = FileRules(max_file_bytes=fc.max_file_bytes, snippet_chars=fc.snippet_chars,
                      exclude=fc.exclude, exclude_paths=(cfg.data_path,))
    return FilesCollector(roots=roots, rules=rules, settle_seconds=fc.settle_seconds)


BUILDERS: dict[str, Callable[[Config], Collector | None]] = {
    "files": _files,
}


def build_collectors(cfg: Config) -> list[Collector]:
    out = []
    for name, build in BUILDERS.items():
        c = build(cfg)
        if c is not None:
            out.append(c)
    if cfg.collectors.browser.history_files or cfg.collectors.shell.history_files:
        log.warning("browser and shell history collectors are not built yet; the listed "
                    "history_files are kept in the config but not read")
    return out
