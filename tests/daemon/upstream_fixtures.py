"""Start real misbehaving OpenAI-compatible upstreams (tests/daemon/fake_upstream.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest


@dataclass
class Upstream:
    name: str
    workdir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    _history: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> Upstream:
        """Start (or restart, on the same port) the server and wait until it answers."""
        port_file = self.workdir / f"{self.name}.port"
        port_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.daemon.fake_upstream", str(port_file),
             str(self.port), self.name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._history.append(self.proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if port_file.exists():
                self.port = int(port_file.read_text())
                try:
                    if httpx.get(f"http://127.0.0.1:{self.port}/stats", timeout=2).is_success:
                        return self
                except httpx.TransportError:
                    pass
            if self.proc.poll() is not None:
                raise AssertionError(f"upstream {self.name} exited {self.proc.returncode}")
            time.sleep(0.05)
        raise AssertionError(f"upstream {self.name} never started")

    def mode(self, mode: str) -> None:
        httpx.post(f"http://127.0.0.1:{self.port}/control", json={"mode": mode}, timeout=5)

    def stats(self) -> dict[str, Any]:
        return dict(httpx.get(f"http://127.0.0.1:{self.port}/stats", timeout=5).json())

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop_all(self) -> None:
        for p in self._history:
            if p.poll() is None:
                p.kill()
                p.wait()


def model_entry(up: Upstream, **extra: Any) -> dict[str, Any]:
    return {"name": up.name, "backend": "openai", "endpoint": up.url, "model": up.name,
            "timeout_seconds": 5.0, **extra}


@pytest.fixture
def upstreams(tmp_path: Path) -> Iterator[Any]:
    """`upstreams(name)` starts a real misbehaving upstream; all are killed afterwards."""
    made: list[Upstream] = []

    def make(name: str) -> Upstream:
        up = Upstream(name, tmp_path).start()
        made.append(up)
        return up

    yield make
    for up in made:
        up.stop_all()
