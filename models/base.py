"""The seams of the models layer: chat and embedding backends, and their profiles.

Two kinds of backend live here. The pipeline's in-process models implement the blocking
`ChatBackend` / `EmbeddingBackend`. The router's backends implement `RouterBackend`:
async, OpenAI wire format in and out, with `Capabilities` the router reads instead of
asking what class a backend is. A new router backend is one module here subclassing
`RouterBackend` plus one line in daemon/routing/backends.py's `BACKENDS` table.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from models.errors import UpstreamError

Message = dict[str, Any]  # {"role": "system" | "user" | "assistant", "content": str}


@dataclass(frozen=True)
class Profile:
    name: str
    context_tokens: int
    privacy: Literal["local", "remote"] = "local"
    usd_per_mtok_in: float = 0.0
    usd_per_mtok_out: float = 0.0
    skills: tuple[str, ...] = ()
    concurrency: int = 1  # calls this backend serves at once; more wait their turn
    timeout_seconds: float = 120.0  # a call (or a stream's first chunk) slower than this fails
    backend: str = "llama_cpp"  # llama_cpp | openai | sentence_transformers


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    finish_reason: str = "stop"
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class ChatBackend(Protocol):
    profile: Profile

    def complete(self, messages: list[Message], **params: Any) -> Completion: ...


@runtime_checkable
class EmbeddingBackend(Protocol):
    profile: Profile
    dimensions: int

    def embed(self, texts: list[str]) -> list[list[float]]: ...


@dataclass(frozen=True)
class Capabilities:
    """What a router backend can do, declared on its class."""

    chat: bool = True  # answers chat completions
    embed: bool = False  # answers embeddings
    tools: bool = True  # takes a request's `tools` (its calls are then checked)
    streaming: bool = True  # streams as it generates (False: the whole answer, one chunk)
    local: bool = False  # runs inside memoryd (embedded): the router bounds its time
    # itself and never probes it; otherwise the backend times out on its own and is probed


class RouterBackend(Protocol):
    """The router's seam: async chat / stream / embed / probe in OpenAI wire format.

    Subclass it and override what `capabilities` says the backend does; the defaults
    refuse politely. Every failure is an `UpstreamError` (its `kind` drives fallback and
    the circuit breaker)."""

    capabilities: ClassVar[Capabilities] = Capabilities()
    profile: Profile

    async def chat(self, body: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
        """Given an OpenAI chat request, return the answer's bytes and their parse."""
        raise UpstreamError("unsupported", f"{self.profile.name} does not answer chat "
                            "requests", retryable=False)

    def stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        """Given an OpenAI chat request, yield the answer's SSE events."""
        raise UpstreamError("unsupported", f"{self.profile.name} does not stream",
                            retryable=False)

    async def embed(self, texts: list[str]) -> list[list[float]]:
        raise UpstreamError("unsupported", f"{self.profile.name} does not embed",
                            retryable=False)

    async def probe(self) -> bool:
        """Whether the backend answers now (health checks of remote backends)."""
        return True

    def describe(self) -> dict[str, Any]:
        """Extra facts for /v1/models (a replica pool's replicas); none by default."""
        return {}
