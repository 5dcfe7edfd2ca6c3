"""Run llama-cpp-python's own OpenAI-compatible server (`python -m llama_cpp.server`) on
the bundled GGUF as a real upstream for routing tests."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LlamaServer:
    """One server on one loopback port, restartable there; its output goes to
    <workdir>/<name>.log, whose tail a failure to start shows."""

    def __init__(self, gguf: Path, workdir: Path, name: str, *args: str, n_ctx: int = 1024,
                 threads: int = 2) -> None:
        self.gguf, self.log, self.port = gguf, workdir / f"{name}.log", free_port()
        self.args = ["--n_ctx", str(n_ctx), "--n_threads", str(threads), *args]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> LlamaServer:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(self.gguf),
             "--host", "127.0.0.1", "--port", str(self.port), *self.args],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        return self

    def wait(self, seconds: float = 180) -> None:
        """Return once `/models` answers; raise with the log's tail if it never does."""
        assert self.proc is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(self.log.read_text()[-3000:])
            try:
                if httpx.get(f"{self.url}/models", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.3)
        raise AssertionError(f"llama server on {self.port} never answered: "
                             f"{self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@contextmanager
def llama_server(gguf: Path, workdir: Path, *args: str, n_ctx: int = 1024) -> Iterator[str]:
    """A started server's base URL, stopped on exit."""
    server = LlamaServer(gguf, workdir, "llama-server", *args, n_ctx=n_ctx).start()
    try:
        server.wait()
        yield server.url
    finally:
        server.stop()
