"""A full disk at the target: a real tmpfs of 192 KiB mounted by the test (root only)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.store.engine import Engine
from daemon.sync.monitor import Monitor
from daemon.sync.service import SyncService
from tests.conftest import run_cli
from tests.daemon.sync.conftest import fill_store, memory_ids, write_config
from tests.tmpfs import small_tmpfs


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "small", "192k") as disk:
        yield disk


def test_a_full_target_disk_gives_a_clear_error_and_loses_nothing(
        tmp_path: Path, models_dir: Path, vectors: list[list[float]], small_disk: Path) -> None:
    target = [{"name": "usb", "url": f"dir://{small_disk}", "interval_seconds": 1}]
    cfg_path = tmp_path / "a.toml"
    a = write_config(cfg_path, tmp_path / "a", models_dir, target)
    fill_store(a, vectors, 10, "small")
    good = SyncService(a, Engine(a)).push("usb")[0]
    assert good["ok"]

    # Something else fills the disk, leaving 16 KiB: less than the next snapshot needs.
    filler = small_disk / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    os.truncate(filler, max(0, filler.stat().st_size - 16384))
    fill_store(a, vectors, 400, "big")
    proc = run_cli(cfg_path, "sync", "push", check=False)
    assert proc.returncode == 3, proc.stderr
    assert "no space left" in proc.stderr and "untouched" in proc.stderr
    # The previous snapshot is still the current one, whole, and no temp file is left.
    assert (small_disk / "LATEST").read_text().strip() == good["generation"]
    assert not [p for p in small_disk.iterdir() if p.name.endswith(".part-tmp")]
    b = write_config(tmp_path / "b.toml", tmp_path / "b", models_dir, target)
    fill_store(b, vectors, 0, "none")
    assert SyncService(b, Engine(b)).pull("usb")[0]["inserted"] == 10
    assert len(memory_ids(b)) == 10
    # Locally nothing is lost either; the push waits, the target shows why.
    assert len(memory_ids(a)) == 410
    svc = SyncService(a, Engine(a))
    assert svc.state.pending("usb")[0]["op"] == "push"
    assert Monitor(svc).check(a.sync.targets[0]) == "degraded"
    status = svc.status()["targets"][0]
    assert "no space left" in status["reason"] and status["pending"]
