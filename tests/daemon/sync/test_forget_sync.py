"""Forget travels: two real daemons and a sync target (a folder, then an SSH server).
What one daemon forgets leaves the other daemon's search and store, and every
generation at the target, once each has synced; nothing of it comes back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import run_cli
from tests.daemon.sync.conftest import fill_store, memory_ids, write_config

WORD = "zanzibarquux"


def holders(root: Path, word: str = WORD) -> list[str]:
    """Every file under `root` whose bytes hold `word`, and every Parquet segment (its
    parts joined; zstd hides the word from a byte scan) with a row holding it."""
    needle = word.encode()
    out = [str(p.relative_to(root)) for p in root.rglob("*")
           if p.is_file() and needle in p.read_bytes()]
    stems: dict[Path, list[Path]] = {}
    for p in root.rglob("seg-*.parquet.*"):
        if not p.name.endswith("part-tmp"):
            stems.setdefault(p.with_suffix(""), []).append(p)
    for stem, parts in stems.items():
        data = b"".join(p.read_bytes() for p in sorted(parts))
        try:
            table = pq.read_table(pa.BufferReader(data))
        except pa.ArrowException:
            continue  # a part of a segment whose other parts were pruned
        if any(word in str(v) for c in ("text", "title", "doc") if c in table.column_names
               for v in table[c].to_pylist()):
            out.append(f"{stem.relative_to(root)} (decoded)")
    return out


def search_texts(daemon: Any, query: str) -> list[str]:
    with daemon.unix() as c:
        resp = c.get("/v1/memory/search", params={"q": query, "k": 50}, headers=daemon.auth())
    assert resp.status_code == 200, resp.text
    return [f"{h['title']} {h['text']}" for h in resp.json()["results"]]


def sync(cfg: Path, op: str) -> dict[str, Any]:
    out = json.loads(run_cli(cfg, "sync", op, "--json").stdout)["results"][0]
    assert out["ok"], out
    return dict(out)


# The SSH variant repeats the folder one over sftp (a few minutes on 2 busy cores):
# `pytest -m slow tests/daemon/sync/test_forget_sync.py`
@pytest.mark.parametrize("kind", ["dir", pytest.param("ssh", marks=pytest.mark.slow)])
def test_forget_on_one_daemon_leaves_every_daemon_and_every_generation(
        tmp_path: Path, models_dir: Path, vectors: list[list[float]], start_daemon: Any,
        kind: str, request: pytest.FixtureRequest) -> None:
    if kind == "dir":
        target_dir = tmp_path / "share"
        target_dir.mkdir()
        target = {"name": "share", "url": f"dir://{target_dir}", "keep": 3}
    else:
        sshd = request.getfixturevalue("sshd")
        target_dir = sshd.root
        target = sshd.target("share", keep=3)
    a_cfg, b_cfg = tmp_path / "a.toml", tmp_path / "b.toml"
    a = write_config(a_cfg, tmp_path / "a", models_dir, [target])
    b = write_config(b_cfg, tmp_path / "b", models_dir, [target])
    fill_store(a, vectors, 20, "laptop")
    fill_store(a, vectors, 6, f"trip to {WORD}", day=1, id_prefix="trip")  # ids travel
    fill_store(b, vectors, 10, "server")
    da = start_daemon(a_cfg, a.data_path)
    db = start_daemon(b_cfg, b.data_path)

    # Both hold everything; the target holds several generations of each with the word.
    sync(a_cfg, "push")
    assert sync(b_cfg, "pull")["inserted"] == 26
    sync(b_cfg, "push")
    assert sync(a_cfg, "pull")["inserted"] == 10
    fill_store(a, vectors, 2, "later", day=2)
    sync(a_cfg, "push")
    assert len(memory_ids(b)) == 36
    for d in (da, db):
        assert any(WORD in t for t in search_texts(d, WORD))
    for root in (a.data_path, b.data_path, target_dir):
        assert holders(root), f"the scan must see the word in {root} before the forget"

    forgot = run_cli(a_cfg, "forget", "--query", WORD, "--yes").stdout
    assert "forgot" in forgot and "6 memories" in forgot, forgot
    pushed = sync(a_cfg, "push")
    assert pushed["memories"] == 32 and not pushed["forced"]
    pulled = sync(b_cfg, "pull")
    assert pulled["forgot"] == 6, pulled
    sync(b_cfg, "push")
    sync(a_cfg, "pull")

    for d in (da, db):
        assert not [t for t in search_texts(d, WORD) if WORD in t]
    assert memory_ids(b) == memory_ids(a) and len(memory_ids(a)) == 32
    for root in (a.data_path, b.data_path, target_dir):
        assert holders(root) == [], root
    # and it stays gone: B keeps the tombstones, so a forced pull of everything at the
    # target (every segment fetched and merged again) brings nothing back
    assert run_cli(b_cfg, "sync", "pull", "--force").returncode == 0
    assert not [t for t in search_texts(db, WORD) if WORD in t] and len(memory_ids(b)) == 32
