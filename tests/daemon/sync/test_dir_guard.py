"""Sync through a directory target with a real LanceDB store: publish, merge by id, and
the guard against empty, shrunken and corrupt snapshots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon.store.engine import Engine
from daemon.sync.guard import Refused
from daemon.sync.service import SyncService
from daemon.sync.snapshot import generations
from tests.conftest import run_cli
from tests.daemon.sync.conftest import fill_store, memory_ids, write_config


def service(cfg) -> SyncService:  # type: ignore[no-untyped-def]
    return SyncService(cfg, Engine(cfg))


def test_push_then_pull_merges_by_id_without_duplicates_or_deletions(
        tmp_path: Path, models_dir: Path, vectors: list[list[float]]) -> None:
    remote = tmp_path / "share"
    remote.mkdir()
    target = [{"name": "share", "url": f"dir://{remote}", "keep": 2}]
    a = write_config(tmp_path / "a.toml", tmp_path / "a", models_dir, target)
    b = write_config(tmp_path / "b.toml", tmp_path / "b", models_dir, target)
    fill_store(a, vectors, 40, "laptop")
    fill_store(b, vectors, 5, "server")

    out = service(a).push("share")[0]
    assert out["ok"] and out["memories"] == 40
    manifest = json.loads((remote / f"{out['generation']}.manifest.json").read_text())
    assert manifest["format"] == 1 and manifest["counts"]["memories"] == 40
    assert manifest["embedder"] == "all-minilm-l6-v2" and manifest["host"]
    assert manifest["time_range"]["from"].startswith("2026-11-01T09:00")
    assert all(len(f["sha256"]) == 64 for f in manifest["files"])
    assert "vector" in manifest["columns"]
    context = (remote / "context.md").read_text()
    assert "laptop memory 39" in context and "40 memories" in context
    if "open_tasks" in manifest["columns"]:
        assert "follow up on laptop item 36" in context

    sb = service(b)
    first = sb.pull("share")[0]
    assert first["ok"] and first["inserted"] == 40 and first["total"] == 45
    assert memory_ids(b) >= {f"laptop-{i:05d}" for i in range(40)} | {"server-00000"}
    again = sb.pull("share", force=True)[0]  # the same snapshot again: nothing new
    assert again["inserted"] == 0 and again["total"] == 45
    assert len(memory_ids(b)) == 45

    # B publishes its union; A merges it back and loses nothing of its own.
    assert sb.push("share")[0]["memories"] == 45
    back = service(a).pull("share")[0]
    assert back["inserted"] == 5 and back["total"] == 45
    # keep = 2: A's older generations are pruned at the target, the newest kept; B's
    # generation is B's to prune
    for _ in range(2):
        service(a).push("share")
    tag_a, tag_b = service(a).tag, sb.tag
    names = [p.name for p in remote.iterdir()]
    assert len(generations(names, tag_a)) == 2 and len(generations(names, tag_b)) == 1
    pushed_here = a.data_path / "sync" / "push" / "share"
    assert len(generations([p.name for p in pushed_here.iterdir()])) == 2

    # Only what is new since the last snapshot travels: a new day is one new segment.
    fill_store(a, vectors, 3, "tomorrow", day=1)
    inc = service(a).push("share")[0]
    # sent: the new day and the context; skipped: the old day and the (empty) tombstones
    assert inc["memories"] == 48 and inc["sent"] == 2 and inc["skipped"] == 2
    inc_pull = sb.pull("share")[0]
    assert inc_pull["fetched"] == 1 and inc_pull["segments"] == 2 and inc_pull["inserted"] == 3
    assert len(memory_ids(b)) == 48
    # no segment at the target is left that no kept manifest names
    named = {f["name"] for g in generations([p.name for p in remote.iterdir()])
             for f in json.loads((remote / f"{g}.manifest.json").read_text())["files"]}
    assert {p.name for p in remote.glob("seg-*")} <= named


def test_an_emptied_store_is_refused_and_the_remote_keeps_its_memory(
        tmp_path: Path, models_dir: Path, vectors: list[list[float]]) -> None:
    remote = tmp_path / "share"
    remote.mkdir()
    target = [{"name": "share", "url": f"dir://{remote}", "max_shrink": 0.5}]
    cfg_path = tmp_path / "a.toml"
    a = write_config(cfg_path, tmp_path / "a", models_dir, target)
    fill_store(a, vectors, 30, "laptop")
    good = service(a).push("share")[0]["generation"]

    # An accident: the store folder is replaced by an empty one.
    import shutil

    shutil.rmtree(a.data_path / "store")
    fill_store(a, vectors, 0, "none")
    proc = run_cli(cfg_path, "sync", "push", "--target", "share", check=False)
    assert proc.returncode == 4, proc.stderr
    assert "empty" in proc.stderr and "--force" in proc.stderr
    assert (remote / "LATEST").read_text().strip() == good
    status = json.loads(run_cli(cfg_path, "sync", "status", "--json").stdout)
    t = status["targets"][0]
    assert t["refusals"] == 1 and "empty" in t["last_refusal"]["reason"]
    assert t["last_good"]["push"]["generation"] == good
    assert t["pending"] == []

    # A shrink beyond max_shrink is refused as well; a small one is not.
    fill_store(a, vectors, 10, "laptop")
    out = service(a).push("share")[0]
    assert not out["ok"] and "shrinks by 67%" in out["refused"]
    fill_store(a, vectors, 20, "laptop")
    assert service(a).push("share")[0]["ok"]

    # A peer still merges all 30 of the good memories it once had: nothing was lost.
    b = write_config(tmp_path / "b.toml", tmp_path / "b", models_dir, target)
    fill_store(b, vectors, 0, "none")
    sb = service(b)
    assert sb.pull("share")[0]["inserted"] == 20
    # --force publishes the emptied store when the user means it
    shutil.rmtree(a.data_path / "store")
    fill_store(a, vectors, 0, "none")
    assert service(a).push("share", force=True)[0]["ok"]
    assert json.loads((remote / f"{(remote / 'LATEST').read_text().strip()}.manifest.json")
                      .read_text())["counts"]["memories"] == 0
    # ... and a peer refuses to accept an empty snapshot unless forced
    refused = sb.pull("share")[0]
    assert "empty" in refused["refused"]
    assert len(memory_ids(b)) == 20


@pytest.mark.parametrize("damage", ["manifest", "part", "latest"])
def test_a_corrupt_remote_snapshot_is_refused_and_nothing_is_merged(
        tmp_path: Path, models_dir: Path, vectors: list[list[float]], damage: str) -> None:
    remote = tmp_path / "share"
    remote.mkdir()
    target = [{"name": "share", "url": f"dir://{remote}"}]
    a = write_config(tmp_path / "a.toml", tmp_path / "a", models_dir, target)
    b_path = tmp_path / "b.toml"
    b = write_config(b_path, tmp_path / "b", models_dir, target)
    fill_store(a, vectors, 12, "laptop")
    fill_store(b, vectors, 3, "server")
    gen = service(a).push("share")[0]["generation"]
    if damage == "manifest":
        (remote / f"{gen}.manifest.json").write_text('{"format": 1, "counts": {"memo')
    elif damage == "part":
        manifest = json.loads((remote / f"{gen}.manifest.json").read_text())
        part = remote / manifest["segments"][0]["parts"][0]
        data = bytearray(part.read_bytes())
        data[len(data) // 2] ^= 0xFF
        part.write_bytes(bytes(data))
    else:
        for head in remote.glob("LATEST*"):
            head.write_bytes(b"\x00garbage")

    proc = run_cli(b_path, "sync", "pull", check=False)
    assert proc.returncode == 4, proc.stderr
    why = {"manifest": "corrupt", "part": "checksum", "latest": "LATEST"}[damage]
    assert why in proc.stderr
    assert memory_ids(b) == {f"server-{i:05d}" for i in range(3)}
    status = SyncService(b, None).status()["targets"][0]
    assert status["refusals"] == 1 and why in status["last_refusal"]["reason"]
    if damage == "manifest":  # the next publish replaces it; pulls work again
        assert service(a).push("share")[0]["ok"]
        assert service(b).pull("share")[0]["inserted"] == 12


def test_pull_refuses_a_snapshot_from_another_embedder(
        tmp_path: Path, models_dir: Path, vectors: list[list[float]]) -> None:
    remote = tmp_path / "share"
    remote.mkdir()
    target = [{"name": "share", "url": f"dir://{remote}"}]
    a = write_config(tmp_path / "a.toml", tmp_path / "a", models_dir, target)
    fill_store(a, vectors, 5, "laptop")
    gen = service(a).push("share")[0]["generation"]
    path = remote / f"{gen}.manifest.json"
    manifest = json.loads(path.read_text())
    manifest["embedder"] = "some-other-model"
    path.write_text(json.dumps(manifest))
    b = write_config(tmp_path / "b.toml", tmp_path / "b", models_dir, target)
    with pytest.raises(Refused, match="embedded with 'some-other-model'"):
        service(b).pull_target(b.sync.targets[0])


def test_context_md_lists_digests_first_then_recent_memory_and_open_tasks(
        tmp_path: Path, models_dir: Path, vectors: list[list[float]]) -> None:
    remote = tmp_path / "share"
    remote.mkdir()
    a = write_config(tmp_path / "a.toml", tmp_path / "a", models_dir,
                     [{"name": "share", "url": f"dir://{remote}"}])
    fill_store(a, vectors, 5, "chunk")
    fill_store(a, vectors, 1, "digest", day=-3, level="day")  # older than every chunk
    assert service(a).push("share")[0]["ok"]
    context = (remote / "context.md").read_text()
    assert context.index("## Digests") < context.index("digest memory 0") \
        < context.index("## Recent memory") < context.index("chunk memory 4")
    assert "6 memories (5 chunk, 1 day)" in context
