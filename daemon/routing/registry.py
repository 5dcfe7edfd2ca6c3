"""The model registry: every model the router knows, built once from the config.

The embedded summarizer (llama.cpp) and embedder (sentence-transformers) are always
there under their configured names; `[[router.models]]` adds more. How an embedded model
is reached depends on the process: the worker calls it in-process, the daemon asks the
worker (so the daemon never loads a second copy). The caller passes those two functions.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from daemon.config import Config, RouterModel
from daemon.errors import ConfigError
from models.base import Completion, Message, Profile
from models.local_async import LocalChat, LocalEmbed
from models.openai_http import OpenAIBackend
from models.replicas import ReplicaPool

TASKS = ("compaction", "classify", "extract", "reasoning", "code", "default")
# An embedded model on a busy 2-core box can take minutes; past this the call counts as
# failed and the chain moves on (the native call itself cannot be interrupted).
LOCAL_TIMEOUT = 1800.0
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})

# name, messages, params -> Completion (an embedded llama.cpp model, wherever it lives)
LocalCompleteFn = Callable[[str, list[Message], dict[str, Any]], Completion]
LocalEmbedFn = Callable[[str, list[str]], list[list[float]]]


@dataclass
class Registry:
    # name -> LocalChat | OpenAIBackend | ReplicaPool (several replicas of one model)
    chat: dict[str, Any] = field(default_factory=dict)
    embed: dict[str, Any] = field(default_factory=dict)  # name -> LocalEmbed | OpenAIBackend
    routes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    memory_remote: frozenset[str] = frozenset()
    specs: dict[str, RouterModel] = field(default_factory=dict)

    def profiles(self) -> list[Profile]:
        seen = {**self.chat, **self.embed}
        return [b.profile for b in seen.values()]


def _privacy(m: RouterModel) -> str:
    if m.privacy:
        if m.privacy not in ("local", "remote"):
            raise ConfigError(f"router model {m.name!r}: privacy must be local or remote")
        return m.privacy
    if m.backend != "openai":
        return "local"
    hosts = {(urlsplit(e).hostname or "").lower() for e in (m.endpoints or (m.endpoint,))}
    return "local" if hosts <= LOOPBACK else "remote"  # a pool is local only if all are


def _endpoints(spec: RouterModel) -> tuple[str, ...]:
    """The base URLs of an openai model: its `endpoint`, or its replicas' `endpoints`."""
    if spec.endpoint and spec.endpoints:
        raise ConfigError(f"router model {spec.name!r} sets both endpoint and endpoints: "
                          "use endpoint for one server, endpoints for several replicas")
    endpoints = spec.endpoints or ((spec.endpoint,) if spec.endpoint else ())
    if not endpoints:
        raise ConfigError(f"router model {spec.name!r} needs endpoint = "
                          "\"http://host:port/v1\" (or endpoints = [...] for replicas)")
    for e in endpoints:
        if not e.startswith(("http://", "https://")):
            raise ConfigError(f"router model {spec.name!r}: {e!r} is not a base URL like "
                              "\"http://host:port/v1\"")
    if len({e.rstrip("/") for e in endpoints}) != len(endpoints):
        raise ConfigError(f"router model {spec.name!r} lists the same endpoint twice")
    return endpoints


def _bind(fn: LocalCompleteFn,
          name: str) -> Callable[[list[Message], dict[str, Any]], Completion]:
    return lambda msgs, params: fn(name, msgs, params)


def build_registry(cfg: Config, local_complete: LocalCompleteFn, local_embed: LocalEmbedFn,
                   client: Callable[[], aiohttp.ClientSession]) -> Registry:
    """Given the config and how to reach embedded models here, return the registry.

    Raise ConfigError naming the model when an entry is incomplete or a route names an
    unknown model."""
    r = cfg.router
    m = cfg.models
    reg = Registry(memory_remote=frozenset(r.memory_remote_models))
    summarizer = Profile(name=m.summarizer, context_tokens=m.context_tokens, privacy="local",
                         skills=("compaction", "extract", "default"), concurrency=1,
                         timeout_seconds=LOCAL_TIMEOUT, backend="llama_cpp")
    reg.chat[m.summarizer] = LocalChat(
        summarizer, lambda msgs, params: local_complete(m.summarizer, msgs, params))
    embedder = Profile(name=m.embedder, context_tokens=256, privacy="local", skills=("embed",),
                       concurrency=1, timeout_seconds=LOCAL_TIMEOUT,
                       backend="sentence_transformers")
    reg.embed[m.embedder] = LocalEmbed(embedder, lambda texts: local_embed(m.embedder, texts))
    for spec in r.models:
        if not spec.name:
            raise ConfigError("every [[router.models]] entry needs a name")
        if spec.name in reg.chat or spec.name in reg.embed:
            raise ConfigError(f"router model {spec.name!r} is defined twice")
        profile = Profile(name=spec.name, context_tokens=spec.context_tokens,
                          privacy=_privacy(spec),  # type: ignore[arg-type]
                          usd_per_mtok_in=spec.usd_per_mtok_in,
                          usd_per_mtok_out=spec.usd_per_mtok_out, skills=spec.skills,
                          concurrency=max(1, spec.concurrency),
                          timeout_seconds=spec.timeout_seconds, backend=spec.backend)
        reg.specs[spec.name] = spec
        if spec.backend == "openai":
            endpoints = _endpoints(spec)
            key = os.environ.get(spec.api_key_env, "") if spec.api_key_env else ""
            backend: OpenAIBackend | ReplicaPool
            if len(endpoints) == 1:
                backend = OpenAIBackend(profile, endpoints[0], spec.model or spec.name,
                                        client=client, api_key=key)
            else:
                backend = ReplicaPool(profile, list(endpoints), spec.model or spec.name,
                                      client=client, api_key=key)
            if "embed" in spec.skills:
                reg.embed[spec.name] = backend
            if spec.skills != ("embed",):
                reg.chat[spec.name] = backend
        elif spec.backend == "llama_cpp":
            reg.chat[spec.name] = LocalChat(profile, _bind(local_complete, spec.name))
        else:
            raise ConfigError(f"router model {spec.name!r}: backend must be openai or "
                              f"llama_cpp, not {spec.backend!r}")
    reg.routes = dict.fromkeys(TASKS, (m.summarizer,))
    reg.routes["embed"] = (m.embedder,)
    for task, chain in r.routes.items():
        pool = reg.embed if task == "embed" else reg.chat
        for name in chain:
            if name not in pool:
                raise ConfigError(f"[router.routes] {task} names {name!r}, which is not a "
                                  f"known model; known: {', '.join(sorted(pool))}")
        reg.routes[task] = chain
    for task in TASKS:  # a task without its own chain uses the default one
        if task not in r.routes:
            reg.routes[task] = reg.routes["default"]
    for name in reg.memory_remote:
        if name not in reg.chat:
            raise ConfigError(f"router.memory_remote_models names unknown model {name!r}")
    return reg
