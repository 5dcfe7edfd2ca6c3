"""The router's backends by name: `[[router.models]] backend = "…"` picks a factory here.

A new backend is one module in models/ (a `models.base.RouterBackend`) and one line in
`BACKENDS` below; the registry, the router and /v1/models need no change.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from daemon.config import RouterModel
from daemon.errors import ConfigError
from models.base import Completion, Message, Profile, RouterBackend

# name, messages, params -> Completion (an embedded llama.cpp model, wherever it lives)
LocalCompleteFn = Callable[[str, list[Message], dict[str, object]], Completion]
LocalEmbedFn = Callable[[str, list[str]], list[list[float]]]


if TYPE_CHECKING:  # aiohttp (~9 MB) is imported only once an HTTP model is called
    import aiohttp

@dataclass(frozen=True)
class Reach:
    """How this process reaches models: the embedded ones (in-process in the worker,
    through the worker in the daemon) and the shared HTTP connection pool."""

    local_complete: LocalCompleteFn
    local_embed: LocalEmbedFn
    client: Callable[[], aiohttp.ClientSession]


def openai(spec: RouterModel, profile: Profile, reach: Reach) -> RouterBackend:
    """An OpenAI-compatible endpoint, or a pool of replicas of one model."""
    from models.openai_http import OpenAIBackend
    from models.replicas import ReplicaPool

    endpoints = endpoints_of(spec)
    key = os.environ.get(spec.api_key_env, "") if spec.api_key_env else ""
    if len(endpoints) == 1:
        return OpenAIBackend(profile, endpoints[0], spec.model or spec.name,
                             client=reach.client, api_key=key)
    return ReplicaPool(profile, list(endpoints), spec.model or spec.name,
                       client=reach.client, api_key=key)


def llama_cpp(spec: RouterModel, profile: Profile, reach: Reach) -> RouterBackend:
    """Another embedded GGUF model, run where the summarizer runs (the worker)."""
    from models.local_async import LocalChat

    name = spec.name
    return LocalChat(profile, lambda msgs, params: reach.local_complete(name, msgs, params))


BackendFactory = Callable[[RouterModel, Profile, Reach], RouterBackend]
BACKENDS: dict[str, BackendFactory] = {
    "openai": openai,
    "llama_cpp": llama_cpp,
}


def make_backend(spec: RouterModel, profile: Profile, reach: Reach) -> RouterBackend:
    """The backend `spec.backend` names; raise ConfigError naming the known ones."""
    factory = BACKENDS.get(spec.backend)
    if factory is None:
        raise ConfigError(f"router model {spec.name!r}: backend must be one of "
                          f"{', '.join(sorted(BACKENDS))}, not {spec.backend!r}")
    return factory(spec, profile, reach)


def endpoints_of(spec: RouterModel) -> tuple[str, ...]:
    """The base URLs of an HTTP model: its `endpoint`, or its replicas' `endpoints`."""
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
