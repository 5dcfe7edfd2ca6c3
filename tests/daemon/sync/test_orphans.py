"""Files a crashed put left aside (`.part-tmp`) are removed: at the target and in the
local copies at the next sync, in the spool when the daemon starts. A real process is
killed with SIGKILL in the middle of a put; a put still running is left alone."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from daemon.store.engine import Engine
from daemon.sync.service import SyncService
from daemon.sync.transport import TMP_SUFFIX
from tests.daemon.sync.conftest import fill_store, write_config

# A put that stops for good once its bytes are written aside (before the rename).
HANG = """
import os, sys, time
from pathlib import Path
from daemon.sync.dir import DirTransport
os.fsync = lambda fd: time.sleep(3600)
DirTransport(path=Path(sys.argv[1])).put(sys.argv[2], b"x" * 4096)
"""


def stuck_put(folder: Path, name: str) -> subprocess.Popen[bytes]:
    """A real process in the middle of putting `name` into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", HANG, str(folder), name])
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(f".{name}.") for p in folder.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, "the put never started"
        time.sleep(0.05)
    return proc


def crashed_put(folder: Path, name: str) -> None:
    proc = stuck_put(folder, name)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def aside(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(TMP_SUFFIX))


def test_a_crashed_put_leaves_nothing_behind_after_the_next_sync_or_a_start(
        tmp_path: Path, models_dir: Path, vectors: list[list[float]], start_daemon: Any) -> None:
    remote = tmp_path / "share"
    remote.mkdir()
    cfg_path = tmp_path / "a.toml"
    a = write_config(cfg_path, tmp_path / "a", models_dir,
                     [{"name": "share", "url": f"dir://{remote}"}])
    fill_store(a, vectors, 5, "laptop")
    local = a.data_path / "sync" / "push" / "share"
    spool = a.data_path / "sync" / "spool"
    for folder in (remote, local, spool):
        crashed_put(folder, "seg-0123456789abcdef0123456789abcdef.parquet.0000")
    live = stuck_put(remote, "context.md")  # another writer, still at work
    try:
        assert len(aside(remote)) == 2 and len(aside(local)) == 1 and len(aside(spool)) == 1
        sync = SyncService(a, Engine(a))
        assert sync.push("share")[0]["ok"]
        sync.close()
        # the crashed put's file is gone from the target and the local copy; the running
        # put's file is still there
        assert aside(remote) == [n for n in aside(remote) if ".context.md." in n]
        assert len(aside(remote)) == 1 and aside(local) == []
        assert len(aside(spool)) == 1  # the spool is this daemon's: swept when it starts
        start_daemon(cfg_path, a.data_path)
        assert aside(spool) == []
    finally:
        live.kill()
        live.wait()
