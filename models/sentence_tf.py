"""Embeddings from a local sentence-transformers folder (torch imported only on first use)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from models.base import Profile
from models.errors import ModelError
from models.idle import IdleHolder


class SentenceTransformerBackend:
    def __init__(self, folder: Path, *, name: str, dimensions: int | None = None,
                 threads: int = 0, idle_seconds: float = 300.0) -> None:
        self.folder = folder
        self.threads = threads
        self.profile = Profile(name=name, context_tokens=256, privacy="local",
                               skills=("embed",))
        self._dims = dimensions
        self._model = IdleHolder(f"embedder {name}", self._load, idle_seconds)
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model.loaded

    @property
    def dimensions(self) -> int:
        if self._dims is None:
            with self._model.lease() as model:
                self._dims = int(model.get_sentence_embedding_dimension())
        return self._dims

    def _load(self) -> Any:
        # Never reach for a model hub: everything is on disk already.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ModelError("sentence-transformers is not installed; run install.sh") from exc
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            return SentenceTransformer(str(self.folder), device="cpu", local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelError(f"could not load the embedder from {self.folder}: {exc}") from exc

    def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        with self._lock, self._model.lease() as model:
            vecs = model.encode(texts, batch_size=32, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=False)
        return vecs.tolist()

    def unload(self) -> None:
        self._model.unload()
