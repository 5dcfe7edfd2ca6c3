"""The resident reader: the store's read path in a small child process that stays up.

The worker (daemon/store/worker.py) holds torch and llama.cpp and leaves when idle, so an
idle daemon is small; but a search that had to start it again waited seconds for torch
and the embedder to load. The reader answers searches and reads instead: LanceDB plus a
torch-free query embedder (the packaged model exported to ONNX, fp32, its weights packed
for this CPU and mapped from their file; models/onnx_prepacked.py), ~3 s to start (at
daemon start, not at the first search) and never idle-stopped. It also keeps searches
off the worker, so none waits behind an indexing or summary batch.

Idle for `[search] reader_shed_seconds`, it gives back what it can (daemon/store/memtrim.py):
the heap's free pages, and its clean file pages (LanceDB's and onnxruntime's native code,
the mapped weights), which stay in the page cache; the next search maps them back in
milliseconds. What it keeps is its own (anonymous) memory: Python, LanceDB's Python side.

It reads the store the worker writes, seeing its latest commit at every call: on a local
store it checks out a table's latest version when the table's `_versions` folder changed
(daemon/store/commits.py), on a bucket LanceDB asks for it on every read. It never
creates or migrates the store: before the worker has made it, reads go to the
worker (`StoreNotReady`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from daemon.config import Config
from daemon.store import memtrim
from daemon.store.commits import CommitWatch
from daemon.store.engine import Engine, cache_mb
from daemon.store.lance import Store
from daemon.store.worker import StoreNotReady
from models.errors import ModelError

log = logging.getLogger(__name__)
TABLES = ("events", "memories")
# A query is embedded on two cores (where there are two): 5.1 ms a query against 6.0 on
# one (fp32, packed weights; bench/README.md, "The query embedder with its weights packed")
QUERY_THREADS = min(2, os.cpu_count() or 1)


class Reader(Engine):
    """The Engine's read methods, with a query embedder that needs no torch."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        # the worker commits: a local store is brought to its latest commit by `_commits`
        # at each call, a bucket's reads ask for it every time
        self.refresh_seconds = 0.0 if cfg.store.uri else None
        self._commits = None if cfg.store.uri else CommitWatch(cfg.data_path / "store")
        self._fresh = threading.Lock()  # one thread brings the store up to date at a time
        self.mapped_files: frozenset[str] = frozenset()  # weights mapped read-write, never written
        self.query_embed = self._query_embedder()
        self.served = 0
        self.sheds = 0
        self.last_shed: memtrim.Shed | None = None
        self._calls = 0  # in flight
        self._last = time.monotonic()
        self._idle = threading.Condition()
        if cfg.search.reader_shed_seconds > 0:
            threading.Thread(target=self._shed_when_idle, name="reader-shed",
                             daemon=True).start()

    def _query_embedder(self) -> Any:
        from daemon.store.query_embed import packaged_export

        mode = self.cfg.search.query_embedder
        name = self.cfg.models.embedder
        found = packaged_export(self.cfg) if mode != "router" else None
        if found is None:
            log.info("the reader embeds queries through the router (%s)", name)
            return self.models.embed
        from models import onnx_embed

        src, out = found
        started = time.monotonic()
        try:
            onnx_embed.ensure_export(src, out)
            embedder = self._onnx(onnx_embed, out, src, name, mode)
        except ModelError as exc:  # searches still work, at torch's speed
            log.warning("the reader has no ONNX query embedder (%s); it embeds queries "
                        "with torch instead", exc)
            return self.models.embed
        log.info("the reader's query embedder is ready (%s, %.1f s)", embedder.onnx_file.name,
                 time.monotonic() - started)
        return embedder.embed

    def _onnx(self, onnx_embed: Any, out: Path, src: Path, name: str, mode: str) -> Any:
        """The loaded ONNX embedder: fp32 with its weights page cache (prepacked for this
        CPU, else mapped; models/onnx_prepacked.py), or int8."""
        if mode == "onnx":
            from models import onnx_prepacked

            embedder, self.mapped_files = onnx_prepacked.load(
                src, out, name=name, threads=QUERY_THREADS, spin=False)
            return embedder
        embedder = onnx_embed.OnnxEmbedder(out / onnx_embed.INT8, src, name=name,
                                           threads=QUERY_THREADS, spin=False)
        embedder.load()
        return embedder

    @property
    def store(self) -> Store:
        if self._store is None and not self.cfg.store.uri:
            root = self.cfg.data_path / "store"
            if not all((root / f"{t}.lance").is_dir() for t in TABLES):
                raise StoreNotReady("the store is not created yet")
        store = super().store
        if self._commits is None:
            return store
        with self._fresh:
            self._commits.refresh({"events": store.events, "memories": store.memories})
            if self._commits.indexes_changed:  # superseded indexes would fill the caches
                self._commits.indexes_changed = False
                with self._opening:
                    if self._store is store:
                        self._store = None
                log.debug("the worker rewrote the store's indexes: the reader reopens it")
                store = super().store
        return store

    def warm(self) -> dict[str, Any]:
        """Load what the first search needs (called once at daemon start)."""
        try:
            counts = self.store.counts()
        except StoreNotReady:
            counts = {}
        memtrim.malloc_trim()  # what loading freed
        return {"store": counts}

    def status(self) -> dict[str, Any]:
        shed = self.last_shed
        return {"served": self.served, "sheds": self.sheds,
                "last_shed_mb": round(shed.file_kb / 1024, 1) if shed else None,
                "store_cache_mb": cache_mb(self._store),
                **(self.heap.status() if self.heap else {})}

    @contextlib.contextmanager
    def busy(self, method: str) -> Iterator[None]:
        """Around each call from the daemon: a status poll does not count as use."""
        if method == "status":
            yield
            return
        with self._idle:
            self._calls += 1
        try:
            yield
        finally:
            with self._idle:
                self._calls -= 1
                self._last = time.monotonic()
                self._idle.notify_all()

    def _shed_when_idle(self) -> None:
        """Once per idle spell of `reader_shed_seconds`, give memory back (memtrim)."""
        wait = self.cfg.search.reader_shed_seconds
        shed_at = -1.0  # the `_last` of the spell already shed
        while True:
            with self._idle:
                left = self._last + wait - time.monotonic()
                if self._calls or self._last == shed_at or left > 0:  # a call notifies
                    self._idle.wait(timeout=None if self._calls or self._last == shed_at
                                    else left)
                    continue
                shed_at = self._last
                self.last_shed = memtrim.shed(self.mapped_files)
                self.sheds += 1
            log.info("the reader was idle %.0f s: gave back %.0f MB of file pages "
                     "(RSS %.0f -> %.0f MB)", wait, self.last_shed.file_kb / 1024,
                     self.last_shed.rss_before_kb / 1024, self.last_shed.rss_after_kb / 1024)

    def search(self, *args: Any, **kwargs: Any) -> Any:
        self.served += 1
        log.debug("search served by the resident reader")
        return super().search(*args, **kwargs)
