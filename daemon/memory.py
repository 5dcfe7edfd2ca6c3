"""The service layer the CLI and the API share; it knows nothing of HTTP."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from collectors.base import Sink
from daemon.collect import CollectorRuns
from daemon.config import Config
from daemon.hits import Hit
from daemon.journal import Journal
from daemon.privacy import PauseState


class Searcher(Protocol):
    def search(self, query: str, k: int = 10, **filters: Any) -> list[Hit]: ...

    def status(self) -> dict[str, Any]: ...


def hit_json(h: Hit) -> dict[str, Any]:
    """The public search-result shape (a contract: keep these keys)."""
    return {"id": h.id, "source": h.source, "kind": h.kind,
            "ts": h.ts.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "title": h.title, "text": h.text, "score": h.score}


@dataclass
class MemoryService:
    cfg: Config
    journal: Journal
    engine: Searcher
    started: float = 0.0
    collector_runs: CollectorRuns | None = None
    pause: PauseState | None = None
    intake: Sink | None = None  # the privacy gate in front of the journal, for pushed events

    def search(self, query: str, k: int = 10, source: str | None = None,
               since: datetime | None = None, until: datetime | None = None) -> list[Hit]:
        if not query.strip():
            raise ValueError("the query is empty; say what to look for")
        if not 1 <= k <= 200:
            raise ValueError("k must be between 1 and 200")
        return self.engine.search(query, k, source=source, since=since, until=until)

    def status(self, deep: bool = True) -> dict[str, Any]:
        counts = self.journal.counts()
        out: dict[str, Any] = {
            "data_dir": str(self.cfg.data_path),
            "uptime_seconds": round(time.time() - self.started, 1) if self.started else None,
            "journal": counts,
            "collectors": {
                "running": self.collector_runs.snapshot() if self.collector_runs else [],
                "cursors": self.journal.cursors(),
            },
        }
        if deep:
            try:
                out["engine"] = self.engine.status()
            except Exception as exc:
                out["engine"] = {"error": str(exc)}
        out["paused"] = self.pause.paused() if self.pause else None
        out["memory"] = {"available": "error" not in out.get("engine", {}),
                         "pending": counts["new"]}
        return out
