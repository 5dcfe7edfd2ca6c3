"""Embedded backends (llama.cpp, sentence-transformers) behind the router's async seam.

The router speaks OpenAI wire format to every backend. An embedded model answers in a
thread (its native call blocks), and its `Completion` becomes an OpenAI response here. A
streamed request to an embedded model is answered in one content chunk once the whole
answer is ready: the model may live in another process (the worker), whose pipe carries
whole answers, not tokens (tool calls come in that one chunk as `delta.tool_calls`).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from models.base import Capabilities, Completion, Message, Profile, RouterBackend
from models.errors import ModelError, UpstreamError

DONE = b"data: [DONE]\n\n"
PARAMS = ("max_tokens", "temperature", "top_p", "stop", "response_format", "seed", "tools",
          "tool_choice")


def completion_json(c: Completion, request_id: str | None = None) -> dict[str, Any]:
    """A `Completion` in the OpenAI chat-completion shape (tool calls included)."""
    message: dict[str, Any] = {"role": "assistant", "content": c.text}
    if c.extra.get("tool_calls"):
        message = {"role": "assistant", "content": c.text or None,
                   "tool_calls": c.extra["tool_calls"]}
    return {
        "id": request_id or f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion", "created": int(time.time()), "model": c.model,
        "choices": [{"index": 0, "finish_reason": c.finish_reason, "message": message}],
        "usage": {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
                  "total_tokens": c.prompt_tokens + c.completion_tokens},
    }


def completion_from_json(data: dict[str, Any], model: str, seconds: float) -> Completion:
    """An OpenAI chat-completion answer as a `Completion`."""
    choice = data["choices"][0]
    usage = data.get("usage") or {}
    return Completion(text=((choice.get("message") or {}).get("content") or "").strip(),
                      model=model, prompt_tokens=int(usage.get("prompt_tokens") or 0),
                      completion_tokens=int(usage.get("completion_tokens") or 0),
                      seconds=seconds, finish_reason=choice.get("finish_reason") or "stop")


def chunk_event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"


class LocalChat(RouterBackend):
    """Any blocking `complete(messages, params) -> Completion` as an async chat backend."""

    # an embedded llama.cpp model: tool calls via models/tool_format.py; a stream is the
    # whole answer in one chunk (the worker's pipe carries whole answers)
    capabilities = Capabilities(chat=True, embed=False, tools=True, streaming=False,
                                local=True)

    def __init__(self, profile: Profile,
                 complete: Callable[[list[Message], dict[str, Any]], Completion]) -> None:
        self.profile = profile
        self._complete = complete

    async def chat(self, body: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
        params = {k: body[k] for k in PARAMS if body.get(k) is not None}
        try:
            out = await asyncio.to_thread(self._complete, body["messages"], params)
        except UpstreamError:
            raise
        except ModelError as exc:
            raise UpstreamError("model_error", str(exc), retryable=True) from exc
        except Exception as exc:  # the worker died, a pipe broke: another model may answer
            raise UpstreamError("local_error", f"{self.profile.name}: {type(exc).__name__}: "
                                f"{exc}") from exc
        data = completion_json(out)
        return json.dumps(data, ensure_ascii=False).encode(), data

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        _, data = await self.chat(body)
        base = {"id": data["id"], "object": "chat.completion.chunk",
                "created": data["created"], "model": data["model"]}
        message = data["choices"][0]["message"]
        delta: dict[str, Any] = {"role": "assistant", "content": message["content"]}
        if message.get("tool_calls"):
            delta["tool_calls"] = [{"index": i, **call}
                                   for i, call in enumerate(message["tool_calls"])]
        yield chunk_event({**base, "choices": [{"index": 0, "finish_reason": None,
                                                "delta": delta}]})
        yield chunk_event({**base, "usage": data["usage"], "choices": [{
            "index": 0, "delta": {}, "finish_reason": data["choices"][0]["finish_reason"]}]})
        yield DONE


class LocalEmbed(RouterBackend):
    """Any blocking `embed(texts)` as an async embedding backend."""

    capabilities = Capabilities(chat=False, embed=True, tools=False, streaming=False,
                                local=True)

    def __init__(self, profile: Profile, embed: Callable[[list[str]], list[list[float]]]) -> None:
        self.profile = profile
        self._embed = embed

    async def embed(self, texts: list[str]) -> list[list[float]]:
        try:
            return await asyncio.to_thread(self._embed, texts)
        except Exception as exc:
            raise UpstreamError("local_error", f"{self.profile.name}: {exc}") from exc
