"""Any OpenAI-compatible HTTP endpoint (vLLM, Ollama, llama.cpp server, hosted APIs).

Calls go through one shared `aiohttp.ClientSession` per process (a keep-alive pool), so
the hot path does no connection set-up. aiohttp rather than httpx here: measured on this
2-core box against an instant upstream, an httpx AsyncClient request cost 1.3–2.4 ms of
CPU and an aiohttp one 0.25 ms, and this client sits on every routed request
(bench/README.md, routing overhead). `chat` returns the upstream's bytes unchanged with
their parse; `stream` yields the upstream's SSE events as they arrive. Every failure is an
`UpstreamError` whose `kind` the router's fallback and circuit breaker act on.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from models.base import Capabilities, Profile, RouterBackend
from models.errors import UpstreamError

DONE = b"data: [DONE]\n\n"


def shared_client(max_connections: int = 256) -> aiohttp.ClientSession:
    """The connection pool every HTTP backend of one process shares (call inside the loop)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_connections, keepalive_timeout=60),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=5), trust_env=False,
        auto_decompress=True, skip_auto_headers=("User-Agent",))


def _status_error(status: int, headers: Any, text: str, name: str) -> UpstreamError:
    detail = text[:300].strip()
    if status == 429:
        after = headers.get("retry-after")
        try:
            retry_after = float(after) if after else None
        except ValueError:
            retry_after = None
        return UpstreamError("rate_limited", f"{name} is rate-limiting (429): {detail}",
                             status=status, retry_after=retry_after)
    if status >= 500 or status == 408:
        return UpstreamError("server_error", f"{name} failed with HTTP {status}: {detail}",
                             status=status)
    return UpstreamError("bad_request", f"{name} refused the request (HTTP {status}): {detail}",
                         status=status, retryable=False)


class OpenAIBackend(RouterBackend):
    """Chat and embeddings from an OpenAI-compatible endpoint such as http://host/v1."""

    capabilities = Capabilities(chat=True, embed=True, tools=True, streaming=True, local=False)

    def __init__(self, profile: Profile, endpoint: str, model: str, *,
                 client: Callable[[], aiohttp.ClientSession], api_key: str = "") -> None:
        self.profile = profile
        self.endpoint = endpoint.rstrip("/")
        self.model = model
        self._client = client
        self._chat_url = f"{self.endpoint}/chat/completions"
        self._headers = {"content-type": "application/json"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self._timeout = aiohttp.ClientTimeout(total=profile.timeout_seconds, sock_connect=5)
        self._stream_timeout = aiohttp.ClientTimeout(total=None, sock_connect=5,
                                                     sock_read=profile.timeout_seconds)

    def _body(self, body: dict[str, Any]) -> bytes:
        return json.dumps({**body, "model": self.model}, ensure_ascii=False).encode()

    def _failed(self, exc: BaseException) -> UpstreamError:
        name = self.profile.name
        if isinstance(exc, asyncio.TimeoutError):
            return UpstreamError("timeout", f"{name} did not answer within "
                                 f"{self.profile.timeout_seconds:g} s")
        return UpstreamError("connect", f"{name} at {self.endpoint} failed: "
                             f"{type(exc).__name__}: {exc}")

    async def chat(self, body: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
        """Given an OpenAI chat request, return the upstream's raw answer and its parse."""
        name = self.profile.name
        try:
            async with self._client().post(self._chat_url, data=self._body(body),
                                           headers=self._headers,
                                           timeout=self._timeout) as resp:
                raw = await resp.read()
                status, headers = resp.status, resp.headers
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise self._failed(exc) from exc
        if status >= 400:
            raise _status_error(status, headers, raw.decode("utf-8", "replace"), name)
        try:
            data = json.loads(raw)
            data["choices"][0]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise UpstreamError("bad_response", f"{name} answered something that is not a "
                                f"chat completion: {raw[:200]!r}") from exc
        return raw, data

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        """Yield the upstream's SSE events (`data: …\\n\\n`), ending with `data: [DONE]`.

        Raise UpstreamError when the upstream fails, including a stream cut off before
        its `[DONE]` (the upstream died mid-answer)."""
        name = self.profile.name
        try:
            async with self._client().post(self._chat_url,
                                           data=self._body({**body, "stream": True}),
                                           headers=self._headers,
                                           timeout=self._stream_timeout) as resp:
                if resp.status >= 400:
                    text = (await resp.read()).decode("utf-8", "replace")
                    raise _status_error(resp.status, resp.headers, text, name)
                async for line in resp.content:
                    if not line.startswith(b"data:"):
                        continue
                    if line[5:].strip() == b"[DONE]":
                        yield DONE
                        return
                    yield line.rstrip(b"\r\n") + b"\n\n"
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise self._failed(exc) from exc
        raise UpstreamError("truncated", f"{name} ended its stream without [DONE]")

    async def embed(self, texts: list[str]) -> list[list[float]]:
        name = self.profile.name
        try:
            async with self._client().post(
                    f"{self.endpoint}/embeddings", headers=self._headers,
                    data=json.dumps({"model": self.model, "input": texts}).encode(),
                    timeout=self._timeout) as resp:
                raw = await resp.read()
                status, headers = resp.status, resp.headers
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise self._failed(exc) from exc
        if status >= 400:
            raise _status_error(status, headers, raw.decode("utf-8", "replace"), name)
        try:
            rows = sorted(json.loads(raw)["data"], key=lambda r: r["index"])
            return [list(map(float, r["embedding"])) for r in rows]
        except (ValueError, KeyError, TypeError) as exc:
            raise UpstreamError("bad_response", f"{name} sent malformed embeddings") from exc

    async def probe(self) -> bool:
        """True when the endpoint answers `GET /models` (the background health check)."""
        try:
            async with self._client().get(
                    f"{self.endpoint}/models", headers=self._headers,
                    timeout=aiohttp.ClientTimeout(total=min(5.0, self.profile.timeout_seconds))
            ) as resp:
                await resp.read()
                return resp.status < 500
        except (TimeoutError, aiohttp.ClientError, OSError):
            return False
