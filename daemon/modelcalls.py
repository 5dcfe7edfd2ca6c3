"""The one place the harness calls models, by task name.

`ModelCalls.complete(task, messages)` and `.embed(texts)` are what the pipeline uses;
the router (a later issue) replaces this module's insides with routes per task, keeping
the same two calls. Today every chat task goes to the embedded llama.cpp summarizer.
"""

from __future__ import annotations

import logging
from typing import Any

from daemon.config import Config
from models.assets import embedder_dimensions, embedder_path, gguf_path
from models.base import Completion, Message
from models.llama_cpp import LlamaCppBackend
from models.sentence_tf import SentenceTransformerBackend

log = logging.getLogger(__name__)


class ModelCalls:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        m = cfg.models
        self._chat: LlamaCppBackend | None = None
        self.embedder = SentenceTransformerBackend(
            embedder_path(m.embedder), name=m.embedder, dimensions=embedder_dimensions(m.embedder),
            threads=m.embed_threads, idle_seconds=m.idle_unload_seconds)

    @property
    def chat(self) -> LlamaCppBackend:
        if self._chat is None:  # assembling a packaged GGUF takes seconds: do it on first use
            m = self.cfg.models
            path = gguf_path(m.summarizer, self.cfg.models_path)
            self._chat = LlamaCppBackend(path, name=m.summarizer, context_tokens=m.context_tokens,
                                         threads=m.threads, idle_seconds=m.idle_unload_seconds)
        return self._chat

    def complete(self, task: str, messages: list[Message], **params: Any) -> Completion:
        return self.chat.complete(messages, **params)

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.embed(texts)

    def loaded(self) -> dict[str, bool]:
        return {"summarizer": bool(self._chat and self._chat.loaded),
                "embedder": self.embedder.loaded}
