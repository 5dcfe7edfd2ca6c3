"""Shared fixtures: each test gets its own MEMORYD_HOME; real models are assembled once
per machine into a shared cache (MEMORYD_TEST_MODELS_DIR) so tests do not copy 0.5 GB."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w

MODELS_DIR = Path(os.environ.get("MEMORYD_TEST_MODELS_DIR",
                                 Path.home() / ".cache" / "memoryd" / "test-models"))


@pytest.fixture(autouse=True)
def memoryd_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("MEMORYD_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


@pytest.fixture(scope="session")
def models_dir() -> Path:
    from models.assets import gguf_path

    gguf_path("qwen2.5-coder-0.5b-instruct", MODELS_DIR)
    return MODELS_DIR


@pytest.fixture(scope="session")
def gguf(models_dir: Path) -> Path:
    from models.assets import gguf_path

    return gguf_path("qwen2.5-coder-0.5b-instruct", models_dir)


@pytest.fixture
def onnx_export(make_config, tmp_path: Path) -> tuple[Path, Path]:
    """(the packaged embedder's folder, a private copy of its ONNX export dir: fp32, int8
    and the stamp, none of the copies made from them)."""
    import shutil

    from daemon.config import load_config
    from models import onnx_embed
    from models.assets import embedder_path

    cfg = load_config(make_config())
    src = embedder_path(cfg.models.embedder)
    made = onnx_embed.ensure_export(src, onnx_embed.export_dir(cfg.models_path,
                                                               cfg.models.embedder, src))
    out = tmp_path / "onnx" / "export"
    out.mkdir(parents=True)
    for name in (onnx_embed.FP32, onnx_embed.INT8, onnx_embed.STAMP):
        shutil.copy(made / name, out / name)
    return src, out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.fixture
def make_config(tmp_path: Path, models_dir: Path):
    """Write a config whose data dir and roots live in tmp_path; return its path."""

    def make(roots: list[Path] | None = None, **sections: Any) -> Path:
        table: dict[str, Any] = {
            "data_dir": str(tmp_path / "data"),
            # tests never read the machine's own browser or shell history
            "collectors": {"files": {"roots": [str(r) for r in (roots or [])]},
                           "browser": {"enabled": False}, "shell": {"enabled": False}},
            "api": {"port": 0},
            "models": {"dir": str(models_dir)},
            # the test box is busy by design: summaries must not wait for a quiet CPU
            "compaction": {"yield_cpu_percent": 0, "yield_on_battery": False},
        }
        table = _merge(table, sections)
        path = tmp_path / "config.toml"
        path.write_text(tomli_w.dumps(table))
        return path

    return make


def stored_memories(data_dir: Path) -> list[dict[str, Any]]:
    """The memories of a data dir's local store, read as any reader reads them (LanceDB
    opened read-only beside a running daemon, or with none)."""
    import lancedb

    table = lancedb.connect(str(data_dir / "store")).open_table("memories")
    return table.to_arrow().select(["id", "level", "model", "title", "text"]).to_pylist()


def model_answers(data_dir: Path, memory_id: str) -> list[dict[str, Any]]:
    """The model answers recorded for one memory (<data_dir>/faithfulness.jsonl): which
    model answered, what the faithfulness check dropped, whether it was unusable."""
    import json

    path = data_dir / "faithfulness.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [r for r in map(json.loads, lines) if r.get("id") == memory_id]


def run_cli(config: Path | None, *args: str, timeout: float = 600,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "daemon.cli"]
    if config is not None:
        cmd += ["--config", str(config)]
    proc = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"memoryd {' '.join(args)} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    data_dir: Path
    log: Path

    @property
    def socket(self) -> Path:
        return self.data_dir / "memoryd.sock"

    @property
    def token(self) -> str:
        return (self.data_dir / "token").read_text().strip()

    @property
    def port(self) -> int:
        return int((self.data_dir / "api.port").read_text())

    def unix(self, **kw: Any) -> httpx.Client:
        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket)),
                            base_url="http://localhost", timeout=120, **kw)

    def tcp(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=120, **kw)

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Any]:
    started: list[Daemon] = []

    def start(config: Path, data_dir: Path | None = None, wait: float = 30) -> Daemon:
        log = tmp_path / f"daemon{len(started)}.log"
        proc = subprocess.Popen([sys.executable, "-m", "daemon.cli", "--config", str(config),
                                 "run"], stdout=open(log, "wb"), stderr=subprocess.STDOUT)
        d = Daemon(proc, data_dir or tmp_path / "data", log)
        started.append(d)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"daemon exited {proc.returncode}:\n{log.read_text()}")
            try:
                with d.unix() as c:
                    if c.get("/health").status_code == 200:
                        return d
            except (httpx.TransportError, FileNotFoundError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"daemon never answered /health:\n{log.read_text()}")

    yield start
    for d in started:
        if d.proc.poll() is None:
            d.proc.send_signal(signal.SIGTERM)
            try:
                d.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                d.proc.kill()
                d.proc.wait()
