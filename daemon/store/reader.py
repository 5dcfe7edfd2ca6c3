"""The resident reader: the store's read path in a small child process that stays up.

The worker (daemon/store/worker.py) holds torch and llama.cpp and leaves when idle, so an
idle daemon is small; but a search that had to start it again waited seconds for torch
and the embedder to load. The reader answers searches and reads instead: LanceDB plus a
torch-free query embedder (the packaged model exported to ONNX, int8; models/onnx_embed.py),
~3 s to start (at daemon start, not at the first search) and never idle-stopped. It also
keeps searches off the worker, so none waits behind an indexing or summary batch.

It reads the store the worker writes, asking for the latest commit on every read. It
never creates or migrates the store: before the worker has made it, reads go to the
worker (`StoreNotReady`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from daemon.config import Config
from daemon.store.engine import Engine
from daemon.store.lance import Store
from daemon.store.worker import StoreNotReady
from models.errors import ModelError

log = logging.getLogger(__name__)
TABLES = ("events", "memories")


class Reader(Engine):
    """The Engine's read methods, with a query embedder that needs no torch."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.refresh_seconds = 0.0  # the worker commits; every read sees its latest commit
        self.query_embed = self._query_embedder()
        self.served = 0

    def _query_embedder(self) -> Any:
        from models.assets import embedder_path, manifest

        mode = self.cfg.search.query_embedder
        name = self.cfg.models.embedder
        if mode == "router" or name not in manifest()["embedder"]:
            log.info("the reader embeds queries through the router (%s)", name)
            return self.models.embed
        from models import onnx_embed

        src = embedder_path(name)
        out = onnx_embed.export_dir(self.cfg.models_path, name, src)
        started = time.monotonic()
        file = out / (onnx_embed.FP32 if mode == "onnx" else onnx_embed.INT8)
        embedder = onnx_embed.OnnxEmbedder(file, src, name=name, threads=1)
        try:
            onnx_embed.ensure_export(src, out)
            embedder.load()
        except ModelError as exc:  # searches still work, at torch's speed
            log.warning("the reader has no ONNX query embedder (%s); it embeds queries "
                        "with torch instead", exc)
            return self.models.embed
        log.info("the reader's query embedder is ready (%s, %.1f s)", file.name,
                 time.monotonic() - started)
        return embedder.embed

    @property
    def store(self) -> Store:
        if self._store is None and not self.cfg.store.uri:
            root = self.cfg.data_path / "store"
            if not all((root / f"{t}.lance").is_dir() for t in TABLES):
                raise StoreNotReady("the store is not created yet")
        return super().store

    def warm(self) -> dict[str, Any]:
        """Load what the first search needs (called once at daemon start)."""
        try:
            counts = self.store.counts()
        except StoreNotReady:
            counts = {}
        return {"store": counts}

    def status(self) -> dict[str, Any]:
        return {"served": self.served}

    def search(self, *args: Any, **kwargs: Any) -> Any:
        self.served += 1
        log.debug("search served by the resident reader")
        return super().search(*args, **kwargs)
