"""kill -9 during `memoryd sync push` and `sync pull` to a directory target, at random
moments from a seeded RNG (the seed is in every failure message; MEMORYD_CRASH_SEED
replays one): the target always holds one complete snapshot (the old or the new, never
a torn one), the next sync completes, and the receiving side never holds a memory twice.

Real processes (the CLI, run as the user runs it), a real LanceDB store with real
embeddings, and a real folder as the target.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from daemon.store.lance import Store
from tests.conftest import run_cli
from tests.daemon.sync.conftest import EMBEDDER, fill_store, write_config

KILLS = 4


def _complete_snapshot(target: Path) -> dict:
    """The manifest LATEST names, after checking that every file it lists is there whole."""
    gen = (target / "LATEST").read_text().strip()
    manifest = json.loads((target / f"{gen}.manifest.json").read_text())
    for f in manifest["files"]:
        data = (target / f["name"]).read_bytes()
        assert len(data) == f["bytes"] and hashlib.sha256(data).hexdigest() == f["sha256"], \
            f"{f['name']} of {gen} is torn"
    for seg in manifest["segments"]:
        whole = b"".join((target / p).read_bytes() for p in seg["parts"])
        assert hashlib.sha256(whole).hexdigest() == seg["sha256"], f"segment {seg['key']}"
    return manifest


def _ids(data_dir: Path) -> list[str]:
    return Store(data_dir / "store", 384, EMBEDDER).memories.to_arrow().column("id").to_pylist()


def _killed_sync(config: Path, op: str, delay: float) -> str:
    """Start `memoryd sync <op>`, SIGKILL it after `delay` s; say how far it got."""
    proc = subprocess.Popen([sys.executable, "-m", "daemon.cli", "--config", str(config),
                             "sync", op], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    finished = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return f"{op} {'had finished' if finished else 'killed'} at {delay:.2f} s"


def test_kill_9_during_push_and_pull_leaves_whole_snapshots_and_no_duplicates(
        tmp_path: Path, models_dir: Path, vectors: list[list[float]]) -> None:
    seed = int(os.environ.get("MEMORYD_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    target = tmp_path / "share"
    target.mkdir()
    targets = [{"name": "share", "url": f"dir://{target}", "keep": 3}]
    a_cfg, b_cfg = tmp_path / "a.toml", tmp_path / "b.toml"
    a = write_config(a_cfg, tmp_path / "a", models_dir, targets)
    b = write_config(b_cfg, tmp_path / "b", models_dir, targets)
    fill_store(a, vectors, 300, "laptop-d0", day=0)
    fill_store(b, vectors, 20, "server", day=40)
    started = time.monotonic()
    run_cli(a_cfg, "sync", "push")
    # kill within about one whole push (process start included), so most kills land
    # inside it: while reading the store, writing parts, the manifest or LATEST
    span = (time.monotonic() - started) * 1.2
    published = {_complete_snapshot(target)["generation"]}
    log: list[str] = []

    for i in range(KILLS):  # new memory each time, so every push has a new snapshot
        fill_store(a, vectors, rng.randint(50, 400), f"laptop-d{i + 1}", day=i + 1)
        log.append(_killed_sync(a_cfg, "push", rng.uniform(0.2, span)))
        why = f"crash seed {seed} (MEMORYD_CRASH_SEED={seed} replays it): {log}"
        manifest = _complete_snapshot(target)
        assert manifest["counts"]["memories"] <= len(_ids(a.data_path)), why
        published.add(manifest["generation"])
        assert not list(target.glob(f"{manifest['generation']}*.part-tmp")), why

    out = run_cli(a_cfg, "sync", "push").stdout
    why = f"crash seed {seed}: {log}"
    final = _complete_snapshot(target)
    a_ids = _ids(a.data_path)
    assert final["counts"]["memories"] == len(a_ids) == len(set(a_ids)), f"{why}\n{out}"

    b_own = set(_ids(b.data_path))
    for _ in range(KILLS):
        log.append(_killed_sync(b_cfg, "pull", rng.uniform(0.2, span)))
        got = _ids(b.data_path)
        why = f"crash seed {seed}: {log}"
        assert len(got) == len(set(got)), f"{why}: a memory twice after a killed pull"
        assert set(got) >= b_own, f"{why}: a killed pull lost local memory"
    run_cli(b_cfg, "sync", "pull")
    got = _ids(b.data_path)
    assert len(got) == len(set(got)) and set(got) == set(a_ids) | b_own, why
    print(why, f"generations seen: {len(published)}")
