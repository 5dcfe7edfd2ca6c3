"""The indexing embedder without torch: the packaged embedder's fp32 ONNX export
(models/onnx_embed.py), batched by length as sentence-transformers batches.

The store worker embeds every event and memory. With torch and sentence-transformers that
took ~8.5 s to load on a quiet box (far longer on a busy one) and ~500 MB; the export loads
in a fraction of a second, maps its weights from a file, and gives the stored vectors' own
numbers (cosine ≥ 0.9999999 against torch's). The export is made once (it needs torch, in a
child process); when it cannot be made or loaded, this falls back to torch and says so in
the log, so indexing never stops.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from models.base import Profile
from models.cores import CORES
from models.errors import ModelError
from models.idle import IdleHolder
from models.onnx_embed import MAX_TOKENS
from models.sentence_tf import SentenceTransformerBackend

log = logging.getLogger(__name__)

# Texts per ONNX call. Measured on a heavy home's history (bench/README.md, "Indexing
# throughput"): 8 embeds ~1.3x faster than 32 (the unfused attention's batch x tokens²
# intermediates leave the cache) and lets a completion wait less for its turn.
BATCH = 8
# ... and at most this many padded tokens a call: a batch of long texts (chunk memories,
# file contents) is smaller. A call's working set grows with its tokens (a fresh session:
# 2 x 256 tokens ~210 MB, 1 x 256 ~110). 128 chunk memories raised the worker's memory by
# 130-149 MB eight a call and 66-71 MB at 512 tokens; 64 texts of 150-400 words, session
# loaded for the call as beside the summarizer: 197-245 MB at 512, 144-161 MB at 256, and
# 256 was as fast or faster (3.1 s against 3.3-3.6; 256 short texts 1.3 s both)
# (bench/README.md, the backfill's peak). One text at the longest a call.
BATCH_TOKENS = MAX_TOKENS


def tokens_about(text: str) -> int:
    """WordPiece tokens in `text`, estimated from its length without tokenizing (English
    prose runs ~4 characters a token, paths and code ~2.5-3), at most MAX_TOKENS."""
    return min(MAX_TOKENS, len(text) // 3 + 2)


def length_batches(texts: list[str], size: int,
                   max_tokens: int = BATCH_TOKENS) -> list[list[int]]:
    """Indices of `texts` in batches of at most `size` texts and `max_tokens` padded
    tokens (each text padded to the batch's longest), longest first (little padding per
    batch, as sentence-transformers' `encode` sorts); a text is never split."""
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    batches: list[list[int]] = []
    for i in order:
        batch = batches[-1] if batches else None
        if (batch is None or len(batch) >= size
                or (len(batch) + 1) * tokens_about(texts[batch[0]]) > max_tokens):
            batches.append([i])
        else:
            batch.append(i)
    return batches


class OnnxIndexEmbedder:
    """`embed(texts)` with the fp32 ONNX export of `src` (exported under `models_dir` when
    missing), falling back to `SentenceTransformerBackend` when the export cannot be used."""

    def __init__(self, src: Path, models_dir: Path, *, name: str, dimensions: int | None,
                 threads: int = 0, idle_seconds: float = 300.0, batch_size: int = BATCH) -> None:
        self.folder = src  # the sentence-transformers folder, as SentenceTransformerBackend
        self.models_dir = models_dir
        self.threads = threads
        self.batch_size = batch_size
        self.profile = Profile(name=name, context_tokens=MAX_TOKENS, privacy="local",
                               skills=("embed",))
        self._dims = dimensions
        self._idle_seconds = idle_seconds
        self._holder: IdleHolder[Any] = IdleHolder(f"embedder {name} (ONNX)", self._load,
                                                   idle_seconds)
        self.fallback: SentenceTransformerBackend | None = None  # set once ONNX failed
        # While this says so, the ONNX session is dropped after each call (a reload from
        # the packed weights' page cache is ~0.1 s): the worker sets it to "the summarizer
        # is loaded", so the two never sit in its memory together (bench/README.md)
        self.release_while: Callable[[], bool] = lambda: False
        # Run after a release: the worker gives the freed session's heap back to the OS
        # here, or it stays with the process through the summarizer's calls.
        self.after_release: Callable[[], None] = lambda: None
        self._lock = threading.Lock()

    @property
    def runtime(self) -> str:
        return "torch" if self.fallback is not None else "onnx"

    @property
    def loaded(self) -> bool:
        return self._holder.loaded or (self.fallback is not None and self.fallback.loaded)

    @property
    def dimensions(self) -> int:
        if self._dims is None:
            self._dims = len(self.embed(["dimensions"])[0])
        return self._dims

    def _load(self) -> Any:
        from models import onnx_embed, onnx_prepacked

        out = onnx_embed.export_dir(self.models_dir, self.profile.name, self.folder)
        onnx_embed.ensure_export(self.folder, out)  # ~90 s and torch, in a child, once
        embedder, _ = onnx_prepacked.load(self.folder, out, name=self.profile.name,
                                          threads=self.threads)
        return embedder

    def _use_torch(self, exc: ModelError) -> SentenceTransformerBackend:
        log.warning("the ONNX indexing embedder is unavailable (%s); indexing embeds with "
                    "torch (sentence-transformers) instead", exc)
        self.fallback = SentenceTransformerBackend(
            self.folder, name=self.profile.name, dimensions=self._dims, threads=self.threads,
            idle_seconds=self._idle_seconds)
        return self.fallback

    def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        with self._lock:
            if self.fallback is None:
                try:
                    return self._embed_onnx(texts)
                except ModelError as exc:
                    self._use_torch(exc)
            assert self.fallback is not None
        return self.fallback.embed(texts)

    def _embed_onnx(self, texts: list[str]) -> list[list[float]]:
        out: list[list[float]] = [[] for _ in texts]
        with self._holder.lease() as embedder:
            for batch in length_batches(texts, self.batch_size):
                with CORES.embedding():  # between completions, never beside one
                    vecs = embedder.embed([texts[i] for i in batch])
                for i, vec in zip(batch, vecs, strict=True):
                    out[i] = vec
        if self.release_while():
            self.release()
        return out

    def release(self) -> None:
        """Drop the ONNX session now (not the torch fallback: that reload takes seconds)."""
        was = self._holder.loaded
        self._holder.unload(reason="released beside the summarizer", quiet=True)
        if was and not self._holder.loaded:
            self.after_release()

    def unload(self) -> None:
        self._holder.unload()
        if self.fallback is not None:
            self.fallback.unload()
