"""The model worker process: it leaves when idle and recovers when killed."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from daemon.config import load_config
from daemon.errors import RetryableError
from daemon.store.worker import WorkerEngine


def test_worker_exits_when_idle_and_comes_back_after_a_crash(make_config, tmp_path: Path) -> None:
    # torch's embedder: its load makes the search below last past the kill (ONNX's is quick)
    cfg = load_config(make_config(models={"embedder_runtime": "torch"}))
    w = WorkerEngine(cfg, idle_seconds=3)
    try:
        assert not w.alive
        assert w.status()["worker"] == "stopped (idle)"  # asking status starts nothing
        assert not w.alive
        assert w.call("status")["store"] == {"events": 0, "memories": 0}
        first = w.pid
        assert first is not None
        deadline = time.monotonic() + 20
        while w.alive and time.monotonic() < deadline:
            w.status()  # polling status (as a tray does) must not keep the worker alive
            time.sleep(0.2)
        assert not w.alive, "the idle worker should have exited"
        assert _gone(first, seconds=30), "the idle worker's process should be gone"

        # kill the worker in the middle of a call: the caller gets a retryable error
        w.call("status")
        victim = w.pid
        assert victim is not None
        threading.Timer(1.0, os.kill, (victim, signal.SIGKILL)).start()
        with pytest.raises(RetryableError, match="will be retried"):
            w.search("anything at all", 3)  # loads torch's embedder: longer than 1 s
        assert w.call("status")["store"]["events"] == 0  # a fresh worker answers
        assert w.pid != victim
    finally:
        w.close()


def _niceness(pid: int | None) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[16])  # field 19: nice


def _gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


ORPHAN = r"""
import sys, time
from daemon.config import load_config
from daemon.store.worker import WorkerEngine
w = WorkerEngine(load_config(sys.argv[1]), idle_seconds=600)
w.call("status")
import threading
threading.Thread(target=w.search, args=("anything", 3), daemon=True).start()  # in flight
time.sleep(0.5)
print(w.pid, flush=True)
time.sleep(600)
"""


def test_the_worker_does_not_outlive_a_killed_daemon(make_config) -> None:
    import subprocess
    import sys

    parent = subprocess.Popen([sys.executable, "-c", ORPHAN, str(make_config())],
                              stdout=subprocess.PIPE, text=True)
    try:
        worker_pid = int(parent.stdout.readline())
        os.kill(worker_pid, 0)  # running
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        # it leaves at once, not after finishing the call in flight (~6 s of model loading)
        assert _gone(worker_pid, seconds=5), "the worker kept running after its daemon died"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_the_worker_indexes_with_onnx_and_no_torch(make_config) -> None:
    """The default indexing embedder (the ONNX export, models/onnx_index.py): the worker's
    rows are found by a search, and torch was never loaded into the worker."""
    from datetime import UTC, datetime

    from collectors.base import Event

    cfg = load_config(make_config())
    assert cfg.models.embedder_runtime == "onnx"
    now = datetime.now(UTC)
    events = [Event.new(ts=now, source="shell", kind="shell.command", subject=cmd)
              for cmd in ("kubectl rollout restart deployment/ledger-api",
                          "cargo build --release -p tidepool", "ls -la")]
    w = WorkerEngine(cfg, idle_seconds=0)
    try:
        assert w.call("index", events) == 3
        hits = w.call("search", "restart the ledger api deployment", 3)
        assert hits and hits[0].id == events[0].id
        maps = Path(f"/proc/{w.pid}/maps").read_text()
        assert _niceness(w.pid) == cfg.pipeline.worker_nice == 10  # background work
        if "MALLOC_ARENA_MAX" not in os.environ:  # a user's own setting is kept
            environ = Path(f"/proc/{w.pid}/environ").read_bytes().split(b"\0")
            assert b"MALLOC_ARENA_MAX=2" in environ
        assert "libtorch" not in maps, "the worker loaded torch to index"
        assert w.call("status")["models_loaded"]["embedder"] is True
    finally:
        w.close()
