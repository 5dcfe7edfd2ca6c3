"""The completion service is HTTP-free: any front end builds a ChatRequest and gets an
Answer (with memoryd's explanation spliced in and the decision in telemetry) or a
Refused carrying the status, type and message to map. The backend is a test's own at
the router's seam (tests/daemon/routing/test_backends.py); the HTTP front end over the
same service is pinned in test_openai_api.py and test_memory_completions.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from daemon.approvals.queue import Approvals
from daemon.routing import backends
from daemon.routing.completions import ChatRequest, Completions, Refused
from daemon.routing.router import Router
from daemon.routing.telemetry import Telemetry, recent_decisions
from tests.daemon.routing.test_backends import Echo, _cfg, _registry


class Service:
    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg


def _completions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Completions:
    monkeypatch.setitem(backends.BACKENDS, "echo", lambda spec, profile, reach: Echo(profile))
    cfg = _cfg(tmp_path, "echo", ["default"])
    router = Router(_registry(cfg), cfg.router,
                    Telemetry(tmp_path / "t.sqlite3", flush_seconds=0.01))
    approvals = Approvals(tmp_path / "approvals.sqlite3", cfg.approvals)
    return Completions(Service(cfg), router, approvals)  # type: ignore[arg-type]


def test_a_chat_request_without_http_gets_an_explained_answer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = _completions(tmp_path, monkeypatch)
    body = {"messages": [{"role": "user", "content": "stressed"}]}
    answer = asyncio.run(c.chat(ChatRequest(body=body, model="echo", task="code")))
    data = json.loads(answer.raw)
    assert answer.model == "echo" and answer.events is None
    assert data["choices"][0]["message"]["content"] == "desserts"
    assert data["memoryd"]["model"] == "echo" and data["memoryd"]["task"] == "code"
    c.router.telemetry.flush(5.0)
    [decision] = recent_decisions(c.router.telemetry.path, 5, answer.request_id)
    assert decision["model"] == "echo"


def test_an_unknown_model_is_refused_with_what_to_map(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = _completions(tmp_path, monkeypatch)
    body = {"messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(Refused) as refused:
        asyncio.run(c.chat(ChatRequest(body=body, model="gpt-nine")))
    assert refused.value.status == 404 and refused.value.kind == "model_not_found"
    assert "known models" in str(refused.value)
