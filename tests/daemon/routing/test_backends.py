"""The model-backend seam: a new backend is a `RouterBackend` subclass and one line in
`BACKENDS`; the registry files it by its capabilities, the router calls it, bounds a
local one's time itself and probes only remote ones. The backend here is a test's own
(a fake at the seam); the real ones are exercised in test_routing.py and test_replicas.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
import tomli_w

from daemon.config import load_config
from daemon.errors import ConfigError
from daemon.routing import backends
from daemon.routing.registry import build_registry
from daemon.routing.router import Ask, Router
from daemon.routing.telemetry import Telemetry
from models.base import Capabilities, RouterBackend


class Echo(RouterBackend):
    """Answers every chat with the last message's text, reversed."""

    capabilities: ClassVar[Capabilities] = Capabilities(chat=True, embed=True, local=False)
    probes: ClassVar[list[str]] = []

    def __init__(self, profile: Any) -> None:
        self.profile = profile

    async def chat(self, body: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
        text = body["messages"][-1]["content"][::-1]
        data = {"choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 3}}
        return json.dumps(data).encode(), data

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return [[float(len(t))] for t in texts]

    async def probe(self) -> bool:
        Echo.probes.append(self.profile.name)
        return True


def _cfg(tmp_path: Path, backend: str, skills: list[str]) -> Any:
    path = tmp_path / "router.toml"
    path.write_text(tomli_w.dumps({"data_dir": str(tmp_path / "data"), "router": {
        "models": [{"name": "echo", "backend": backend, "context_tokens": 4096,
                    "skills": skills}],
        "routes": {"default": ["echo"]}, "health_interval_seconds": 0}}))
    return load_config(path)


def _registry(cfg: Any) -> Any:
    def local(*_: Any) -> Any:
        raise AssertionError("no embedded model in this test")

    return build_registry(cfg, local, local, lambda: None)  # type: ignore[arg-type]


def test_a_new_backend_is_one_class_and_one_line(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(backends.BACKENDS, "echo", lambda spec, profile, reach: Echo(profile))
    cfg = _cfg(tmp_path, "echo", ["default", "embed"])
    reg = _registry(cfg)
    assert isinstance(reg.chat["echo"], Echo) and reg.embed["echo"] is reg.chat["echo"]
    router = Router(reg, cfg.router, Telemetry(tmp_path / "t.sqlite3", flush_seconds=0.01))

    async def go() -> tuple[Any, Any]:
        routed = await router.complete({"messages": [{"role": "user", "content": "abc"}]},
                                       Ask(task="default", model="echo"))
        vectors = await router.embed(["four"], "echo")
        await router.probe_once()
        return routed, vectors

    routed, vectors = asyncio.run(go())
    assert routed.model == "echo" and routed.data["choices"][0]["message"]["content"] == "cba"
    assert vectors == ("echo", [[4.0]])
    # remote backends are probed; the embedded summarizer and embedder (local) are not
    assert Echo.probes == ["echo"]
    assert reg.chat[cfg.models.summarizer].capabilities.local


def test_an_unknown_backend_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="backend must be one of llama_cpp, openai, not 'nope'"):
        _registry(_cfg(tmp_path, "nope", ["default"]))


def test_a_backend_that_does_not_embed_is_never_an_embedder(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    class ChatOnly(Echo):
        capabilities = Capabilities(chat=True, embed=False)

    monkeypatch.setitem(backends.BACKENDS, "chatonly",
                        lambda spec, profile, reach: ChatOnly(profile))
    reg = _registry(_cfg(tmp_path, "chatonly", ["default", "embed"]))
    assert "echo" in reg.chat and "echo" not in reg.embed
