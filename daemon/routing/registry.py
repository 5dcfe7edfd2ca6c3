"""The model registry: every model the router knows, built once from the config.

The embedded summarizer (llama.cpp) and embedder (sentence-transformers) are always
there under their configured names; `[[router.models]]` adds more. How an embedded model
is reached depends on the process: the worker calls it in-process, the daemon asks the
worker (so the daemon never loads a second copy). The caller passes those two functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from daemon.config import Config, RouterModel
from daemon.errors import ConfigError
from daemon.routing.backends import LocalCompleteFn, LocalEmbedFn, Reach, make_backend
from models.base import Profile, RouterBackend
from models.local_async import LocalChat, LocalEmbed

if TYPE_CHECKING:  # aiohttp (~9 MB) is imported only once an HTTP model is called
    import aiohttp

TASKS = ("compaction", "classify", "extract", "reasoning", "code", "default")
# An embedded model on a busy 2-core box can take minutes; past this the call counts as
# failed and the chain moves on (the native call itself cannot be interrupted).
LOCAL_TIMEOUT = 1800.0
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


@dataclass
class Registry:
    chat: dict[str, RouterBackend] = field(default_factory=dict)
    embed: dict[str, RouterBackend] = field(default_factory=dict)
    routes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    memory_remote: frozenset[str] = frozenset()
    specs: dict[str, RouterModel] = field(default_factory=dict)

    def profiles(self) -> list[Profile]:
        seen = {**self.chat, **self.embed}
        return [b.profile for b in seen.values()]

    def add(self, name: str, backend: RouterBackend, skills: tuple[str, ...]) -> None:
        """File `backend` under the pools its capabilities and skills put it in: the
        embedding pool when it embeds and has the `embed` skill, the chat pool when it
        chats and is not an embedder only."""
        caps = backend.capabilities
        if caps.embed and "embed" in skills:
            self.embed[name] = backend
        if caps.chat and (skills != ("embed",) or not caps.embed):
            self.chat[name] = backend


def _privacy(m: RouterModel) -> str:
    if m.privacy:
        if m.privacy not in ("local", "remote"):
            raise ConfigError(f"router model {m.name!r}: privacy must be local or remote")
        return m.privacy
    if m.backend != "openai":
        return "local"
    hosts = {(urlsplit(e).hostname or "").lower() for e in (m.endpoints or (m.endpoint,))}
    return "local" if hosts <= LOOPBACK else "remote"  # a pool is local only if all are


def _profile(spec: RouterModel) -> Profile:
    return Profile(name=spec.name, context_tokens=spec.context_tokens,
                   privacy=_privacy(spec),  # type: ignore[arg-type]
                   usd_per_mtok_in=spec.usd_per_mtok_in,
                   usd_per_mtok_out=spec.usd_per_mtok_out, skills=spec.skills,
                   concurrency=max(1, spec.concurrency),
                   timeout_seconds=spec.timeout_seconds, backend=spec.backend)


def _embedded(cfg: Config, reach: Reach, reg: Registry) -> None:
    """The summarizer and the embedder, always there under their configured names."""
    m = cfg.models
    summarizer = Profile(name=m.summarizer, context_tokens=m.context_tokens, privacy="local",
                         skills=("compaction", "extract", "default"), concurrency=1,
                         timeout_seconds=LOCAL_TIMEOUT, backend="llama_cpp")
    reg.chat[m.summarizer] = LocalChat(
        summarizer, lambda msgs, params: reach.local_complete(m.summarizer, msgs, params))
    embedder = Profile(name=m.embedder, context_tokens=256, privacy="local", skills=("embed",),
                       concurrency=1, timeout_seconds=LOCAL_TIMEOUT,
                       backend="sentence_transformers")
    reg.embed[m.embedder] = LocalEmbed(embedder,
                                       lambda texts: reach.local_embed(m.embedder, texts))


def _routes(cfg: Config, reg: Registry) -> None:
    """Each task's chain: the configured one, else the default chain."""
    r, m = cfg.router, cfg.models
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


def build_registry(cfg: Config, local_complete: LocalCompleteFn, local_embed: LocalEmbedFn,
                   client: Callable[[], aiohttp.ClientSession]) -> Registry:
    """Given the config and how to reach embedded models here, return the registry.

    Raise ConfigError naming the model when an entry is incomplete or a route names an
    unknown model."""
    reach = Reach(local_complete, local_embed, client)
    reg = Registry(memory_remote=frozenset(cfg.router.memory_remote_models))
    _embedded(cfg, reach, reg)
    for spec in cfg.router.models:
        if not spec.name:
            raise ConfigError("every [[router.models]] entry needs a name")
        if spec.name in reg.chat or spec.name in reg.embed:
            raise ConfigError(f"router model {spec.name!r} is defined twice")
        profile = _profile(spec)
        reg.specs[spec.name] = spec
        reg.add(spec.name, make_backend(spec, profile, reach), spec.skills)
    _routes(cfg, reg)
    for name in reg.memory_remote:
        if name not in reg.chat:
            raise ConfigError(f"router.memory_remote_models names unknown model {name!r}")
    return reg
