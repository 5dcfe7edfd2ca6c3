"""The engine: the heavy half of memoryd (LanceDB store, embedder, summarizer).

It runs inside the worker process while the daemon is busy and leaves with it when idle,
so the daemon itself stays small. `ingest --once` and a local `search` use it in-process.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from collectors.base import Event
from daemon import summarize
from daemon.chunking import Chunk
from daemon.config import Config
from daemon.hits import Hit
from daemon.modelcalls import ModelCalls
from daemon.search import hybrid_search
from daemon.store import Store, event_doc, event_row

log = logging.getLogger(__name__)


class Engine:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.models = ModelCalls(cfg)
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.cfg.data_path / "store", self.models.embedder.dimensions,
                                self.cfg.models.embedder)
        return self._store

    def index(self, events: list[Event]) -> int:
        """Embed events and upsert them into the store; they are searchable on return."""
        if not events:
            return 0
        vectors = self.models.embed([event_doc(e)[:2000] for e in events])
        self.store.upsert_events([event_row(e, v) for e, v in zip(events, vectors, strict=True)])
        return len(events)

    def summarize(self, events: list[Event]) -> dict[str, Any]:
        """Summarize one chunk with the local model and store it as a memory."""
        chunk = Chunk(tuple(sorted(events, key=lambda e: (e.ts, e.id))))
        out = self.models.complete("compaction", summarize.prompt(chunk),
                                   max_tokens=self.cfg.models.summary_max_tokens,
                                   temperature=0.2)
        text = out.text or "(the model returned no summary)"
        row = summarize.memory_row(chunk, text, out.model, [])
        row["vector"] = self.models.embed([f"{row['title']}\n{text}"])[0]
        self.store.upsert_memories([row])
        return {"id": row["id"], "events": len(events), "tokens": out.completion_tokens,
                "seconds": out.seconds, "summary": text}

    def search(self, query: str, k: int = 10, source: str | None = None,
               since: datetime | None = None, until: datetime | None = None) -> list[Hit]:
        vector = self.models.embed([query])[0]
        return hybrid_search(self.store, query, vector, k, source=source, since=since,
                             until=until)

    def optimize(self) -> None:
        self.store.optimize()

    def status(self) -> dict[str, Any]:
        return {"store": self.store.counts(), "models_loaded": self.models.loaded()}

    def close(self) -> None:
        self.models.embedder.unload()
        if self.models._chat is not None:
            self.models._chat.unload()
