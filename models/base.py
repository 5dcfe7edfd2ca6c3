"""The seams of the models layer: chat and embedding backends, and their profiles.

A new backend is one module here that implements `ChatBackend` or `EmbeddingBackend`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

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
