"""The one place the harness calls models, by task name.

`ModelCalls.complete(task, messages, **params)` and `.embed(texts)` are what the pipeline
uses. Both go through the router (daemon/routing.py), so a task's chain, fallbacks,
circuit breakers and telemetry apply to the pipeline as to the API. With no router config
every chain is the embedded llama.cpp summarizer, as before. Pipeline prompts carry
captured activity, so they go only to local models unless `router.memory_remote_models`
allows a remote one.

This object lives where the models live (the worker process, or `ingest --once`): the
embedded models are called in-process from here, and `local_complete`/`local_embed` are
what the daemon reaches through the worker (see daemon/worker.py).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.config import Config
from daemon.routing.registry import build_registry
from daemon.routing.router import AllFailed, Ask, LoopThread, NoRoute, Router
from daemon.routing.telemetry import Telemetry
from daemon.store import memtrim
from models.assets import embedder_dimensions, embedder_path, gguf_path, manifest
from models.base import Completion, Message
from models.errors import ModelError
from models.llama_cpp import LlamaCppBackend
from models.local_async import completion_from_json
from models.onnx_index import OnnxIndexEmbedder
from models.sentence_tf import SentenceTransformerBackend

if TYPE_CHECKING:  # aiohttp (~9 MB) is imported only once an HTTP model is called
    import aiohttp

log = logging.getLogger(__name__)


def indexing_embedder(cfg: Config) -> OnnxIndexEmbedder | SentenceTransformerBackend:
    """The worker's embedder: the packaged embedder's ONNX export by default (no torch,
    torch only if the export fails), sentence-transformers when `[models]
    embedder_runtime = "torch"` or the embedder is a user's folder (not exported)."""
    m = cfg.models
    src, dims = embedder_path(m.embedder), embedder_dimensions(m.embedder)
    if m.embedder_runtime == "onnx" and m.embedder in manifest()["embedder"]:
        return OnnxIndexEmbedder(src, cfg.models_path,
                                 name=m.embedder, dimensions=dims, threads=m.embed_threads,
                                 idle_seconds=m.idle_unload_seconds)
    if m.embedder_runtime == "onnx":
        log.info("indexing embeds with torch: %s is a sentence-transformers folder, not a "
                 "packaged embedder with an ONNX export", m.embedder)
    return SentenceTransformerBackend(src, name=m.embedder, dimensions=dims,
                                      threads=m.embed_threads, idle_seconds=m.idle_unload_seconds)


class ModelCalls:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._chat: LlamaCppBackend | None = None
        self._local: dict[str, LlamaCppBackend] = {}
        self.embedder = indexing_embedder(cfg)
        if isinstance(self.embedder, OnnxIndexEmbedder):  # never beside a loaded summarizer
            self.embedder.release_while = self.chat_loaded
            # and what its session freed leaves too: held, it was 30-80 MB of the
            # worker's memory through each digest's model call (bench/README.md)
            self.embedder.after_release = memtrim.malloc_trim
        self._router: Router | None = None
        self._loop: LoopThread | None = None
        self._router_lock = threading.Lock()  # the worker's threads meet here on first use
        self._client: aiohttp.ClientSession | None = None

    @property
    def chat(self) -> LlamaCppBackend:
        """The embedded summarizer (assembling a packaged GGUF takes seconds: on first use)."""
        return self.local_chat(self.cfg.models.summarizer)

    def local_chat(self, name: str) -> LlamaCppBackend:
        backend = self._local.get(name)
        if backend is None:
            m = self.cfg.models
            if name == m.summarizer:
                spec, ctx = m.summarizer, m.context_tokens
            else:
                found = [s for s in self.cfg.router.models
                         if s.name == name and s.backend == "llama_cpp"]
                if not found:
                    raise ModelError(f"{name!r} is not an embedded llama.cpp model")
                spec, ctx = found[0].model or found[0].name, found[0].context_tokens
            path = gguf_path(spec, self.cfg.models_path) if not Path(spec).is_file() \
                else Path(spec)
            backend = LlamaCppBackend(path, name=name, context_tokens=ctx, threads=m.threads,
                                      idle_seconds=m.idle_unload_seconds)
            self._local[name] = backend
            if name == m.summarizer:
                self._chat = backend
        return backend

    def local_complete(self, name: str, messages: list[Message],
                       params: dict[str, Any]) -> Completion:
        """Run an embedded llama.cpp model here (the daemon's router reaches this). The
        ONNX indexing embedder leaves memory first: the model's weights and context
        are the worker's peak (bench/README.md, the backfill)."""
        if isinstance(self.embedder, OnnxIndexEmbedder):
            self.embedder.release()
        return self.local_chat(name).complete(messages, **params)

    def chat_loaded(self) -> bool:
        """Whether an embedded llama.cpp model is in memory."""
        return any(b.loaded for b in self._local.values())

    def local_embed(self, name: str, texts: list[str]) -> list[list[float]]:
        if name != self.embedder.profile.name:
            raise ModelError(f"{name!r} is not the embedded embedder")
        return self.embedder.embed(texts)

    def _http(self) -> aiohttp.ClientSession:
        if self._client is None:
            from models.openai_http import shared_client

            self._client = shared_client()
        return self._client

    @property
    def router(self) -> Router:
        with self._router_lock:
            if self._router is None:
                registry = build_registry(self.cfg, self.local_complete, self.local_embed,
                                          self._http)
                telemetry = Telemetry(self.cfg.data_path / "telemetry.sqlite3",
                                      enabled=self.cfg.router.telemetry,
                                      keep_days=self.cfg.router.telemetry_keep_days)
                self._loop = LoopThread("modelcalls-router")
                self._router = Router(registry, self.cfg.router, telemetry)
            return self._router

    def complete(self, task: str, messages: list[Message], **params: Any) -> Completion:
        """Run a chat task through its route; raise ModelError when no model answered."""
        router = self.router
        assert self._loop is not None
        body: dict[str, Any] = {"messages": messages, **params}
        ask = Ask(task=task, memory_used=1, route="pipeline")
        started = time.monotonic()
        try:
            routed = self._loop.run(router.complete(body, ask))
        except NoRoute as exc:
            raise ModelError(str(exc)) from exc
        except AllFailed as exc:
            if len(exc.errors) == 1:
                raise exc.errors[0][1] from None
            raise ModelError(str(exc)) from exc
        return completion_from_json(routed.data, routed.model, time.monotonic() - started)

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Embed through the `embed` route (whose models must keep the store's dimensions)."""
        if not texts:
            return []
        router = self.router
        assert self._loop is not None
        try:
            return self._loop.run(router.embed(texts, route="pipeline"))[1]
        except (NoRoute, AllFailed) as exc:
            raise ModelError(str(exc)) from exc

    def loaded(self) -> dict[str, bool]:
        return {"summarizer": self.summarizer_loaded(), "embedder": self.embedder.loaded}

    def summarizer_loaded(self) -> bool:
        return bool(self._chat and self._chat.loaded)

    def release_summarizer(self, reason: str) -> None:
        """Unload the embedded summarizer now, not after [models] idle_unload_seconds,
        unless a call is using it."""
        if self._chat is not None:
            self._chat.unload(reason)

    def flush(self) -> None:
        """Write out the telemetry recorded so far (before the process leaves)."""
        if self._router is not None:
            self._router.telemetry.flush()

    def unload(self) -> None:
        self.embedder.unload()
        for backend in self._local.values():
            backend.unload()
