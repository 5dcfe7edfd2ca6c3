"""The embedded llama.cpp backend: a local GGUF file, loaded lazily, unloaded when idle."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from models.base import Completion, Message, Profile
from models.errors import ModelError
from models.idle import IdleHolder

log = logging.getLogger(__name__)


class LlamaCppBackend:
    """Chat completions from a GGUF file through llama-cpp-python, in this process."""

    def __init__(self, path: Path, *, name: str | None = None, context_tokens: int = 4096,
                 threads: int = 0, idle_seconds: float = 300.0,
                 skills: tuple[str, ...] = ("compaction", "extract", "default")) -> None:
        self.path = path
        self.threads = threads or (os.cpu_count() or 2)
        self.context_tokens = context_tokens
        self.profile = Profile(name=name or path.stem, context_tokens=context_tokens,
                               privacy="local", skills=skills)
        self._model = IdleHolder(f"llama.cpp model {path.name}", self._load, idle_seconds)
        self._call_lock = threading.Lock()  # one llama context serves one call at a time

    @property
    def loaded(self) -> bool:
        return self._model.loaded

    def _load(self) -> Any:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise ModelError("llama-cpp-python is not installed; run install.sh") from exc
        try:
            return Llama(model_path=str(self.path), n_ctx=self.context_tokens,
                         n_threads=self.threads, n_threads_batch=self.threads,
                         verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"llama.cpp could not load {self.path}: {exc}") from exc

    def complete(self, messages: list[Message], **params: Any) -> Completion:
        with self._call_lock, self._model.lease() as llm:
            started = time.monotonic()
            try:
                out = llm.create_chat_completion(
                    messages=messages,
                    max_tokens=int(params.get("max_tokens", 256)),
                    temperature=float(params.get("temperature", 0.2)),
                    top_p=float(params.get("top_p", 0.95)),
                    stop=params.get("stop"),
                    response_format=params.get("response_format"),
                    seed=int(params.get("seed", 0)),
                )
            except ValueError as exc:  # e.g. the prompt exceeds the context window
                raise ModelError(f"{self.profile.name}: {exc}") from exc
            seconds = time.monotonic() - started
        choice = out["choices"][0]
        usage = out.get("usage", {})
        return Completion(text=(choice["message"].get("content") or "").strip(),
                          model=self.profile.name,
                          prompt_tokens=int(usage.get("prompt_tokens", 0)),
                          completion_tokens=int(usage.get("completion_tokens", 0)),
                          seconds=seconds, finish_reason=choice.get("finish_reason") or "stop")

    def count_tokens(self, text: str) -> int:
        with self._model.lease() as llm:
            return len(llm.tokenize(text.encode("utf-8"), add_bos=False))

    def unload(self) -> None:
        self._model.unload()
