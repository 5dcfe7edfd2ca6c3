"""The embedded llama.cpp backend: a local GGUF file, loaded lazily, unloaded when idle."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from models import tool_format
from models.base import Completion, Message, Profile
from models.cores import CORES
from models.errors import ModelError
from models.idle import IdleHolder

log = logging.getLogger(__name__)


def _grammar(schema: dict[str, Any]) -> Any:
    """A llama.cpp grammar for a JSON schema (plain JSON when the schema has parts the
    converter does not know)."""
    import json

    from llama_cpp import LlamaGrammar
    from llama_cpp.llama_grammar import JSON_GBNF

    try:
        return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
    except Exception:  # the converter raises bare Exceptions on unsupported keywords
        return LlamaGrammar.from_string(JSON_GBNF, verbose=False)


# Prompt tokens evaluated per step. llama.cpp sizes its compute buffers by it: on the 0.5B
# (151k-token vocabulary) 512 held 223 MB of the worker's own memory after a 1,853-token
# prompt, 128 held 172 MB and the completion took no longer (33.9 s against 36.5 s).
BATCH_TOKENS = 128

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
                         n_batch=BATCH_TOKENS, n_ubatch=BATCH_TOKENS, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"llama.cpp could not load {self.path}: {exc}") from exc

    def complete(self, messages: list[Message], **params: Any) -> Completion:
        """Answer a chat; with `tools` (OpenAI shape) the answer's calls come back in
        `extra["tool_calls"]` with finish_reason "tool_calls" (see models/tool_format)."""
        tools = params.get("tools") or None
        choice_param = params.get("tool_choice")
        grammar = None
        if tools and choice_param == "none":
            tools = choice_param = None  # the template then offers no tools at all
        if tools:
            messages, schema = tool_format.prepare(messages, tools, choice_param)
            if schema is not None:
                grammar = _grammar(schema)
                choice_param = None  # llama-cpp-python ignores "required"; the grammar rules
        with self._call_lock, CORES.completion(), self._model.lease() as llm:
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
                    tools=tools,
                    tool_choice=choice_param,
                    grammar=grammar,
                )
            except ValueError as exc:  # e.g. the prompt exceeds the context window
                raise ModelError(f"{self.profile.name}: {exc}") from exc
            seconds = time.monotonic() - started
        choice = out["choices"][0]
        usage = out.get("usage", {})
        text = (choice["message"].get("content") or "").strip()
        finish = choice.get("finish_reason") or "stop"
        calls = choice["message"].get("tool_calls") or (
            tool_format.parse(text) if tools else None)
        extra: dict[str, Any] = {}
        if calls:
            extra["tool_calls"] = [{"id": c.get("id") or "", "type": "function",
                                    "function": {"name": c["function"]["name"],
                                                 "arguments": c["function"]["arguments"]}}
                                   for c in calls]
            text, finish = "", "tool_calls"
        return Completion(text=text, model=self.profile.name,
                          prompt_tokens=int(usage.get("prompt_tokens", 0)),
                          completion_tokens=int(usage.get("completion_tokens", 0)),
                          seconds=seconds, finish_reason=finish, extra=extra)

    def count_tokens(self, text: str) -> int:
        with self._model.lease() as llm:
            return len(llm.tokenize(text.encode("utf-8"), add_bos=False))

    def unload(self, reason: str = "asked") -> None:
        """Drop the model now unless a call is using it (it loads again on the next)."""
        self._model.unload(reason)
