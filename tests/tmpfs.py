"""A real small disk for disk-full tests: a tmpfs of a given size mounted on a folder."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_tmpfs(mount: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of `size` (e.g. "1m", "192k") on `mount` (made if missing) for the
    block; skip the test where mounting is not permitted (it needs root or
    CAP_SYS_ADMIN). The mount is lazily unmounted after, even if files stay open."""
    mount.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"mounting a {size} tmpfs is not permitted here ({proc.stderr.strip()}); "
                    "this test needs root or CAP_SYS_ADMIN")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
