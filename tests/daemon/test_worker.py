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
from daemon.worker import WorkerEngine


def test_worker_exits_when_idle_and_comes_back_after_a_crash(make_config, tmp_path: Path) -> None:
    cfg = load_config(make_config())
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
            time.sleep(0.2)
        assert not w.alive, "the idle worker should have exited"
        assert _gone(first, seconds=30), "the idle worker's process should be gone"

        # kill the worker in the middle of a call: the caller gets a retryable error
        w.call("status")
        victim = w.pid
        assert victim is not None
        threading.Timer(1.0, os.kill, (victim, signal.SIGKILL)).start()
        with pytest.raises(RetryableError, match="will be retried"):
            w.search("anything at all", 3)  # loads the embedder: takes longer than 1 s
        assert w.call("status")["store"]["events"] == 0  # a fresh worker answers
        assert w.pid != victim
    finally:
        w.close()


def _gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False
