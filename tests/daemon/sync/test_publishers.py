"""Several publishers at one folder target, and forgetting that is not shrinkage: real
LanceDB stores with real embeddings, the sync service and the memory service in-process."""

from __future__ import annotations

from pathlib import Path

from daemon.intake.journal import Journal
from daemon.service import MemoryService
from daemon.store.engine import Engine
from daemon.store.lance import Store
from daemon.sync.service import SyncService
from daemon.sync.snapshot import generations
from tests.daemon.sync.conftest import EMBEDDER, fill_store, memory_ids, write_config

WORD = "zanzibarquux"


def service(cfg) -> SyncService:  # type: ignore[no-untyped-def]
    return SyncService(cfg, Engine(cfg))


def drop_rows(cfg, prefix: str) -> None:  # type: ignore[no-untyped-def]
    """Rows vanish without a forget (an accident, a bug): no tombstone explains them."""
    Store(cfg.data_path / "store", 384, EMBEDDER).delete("memories", f"id LIKE '{prefix}-%'")


def test_a_push_after_forgetting_most_of_the_store_needs_no_force(
        tmp_path: Path, models_dir: Path, vectors: list[list[float]]) -> None:
    remote = tmp_path / "share"
    remote.mkdir()
    target = [{"name": "share", "url": f"dir://{remote}", "max_shrink": 0.5}]
    a = write_config(tmp_path / "a.toml", tmp_path / "a", models_dir, target)
    b = write_config(tmp_path / "b.toml", tmp_path / "b", models_dir, target)
    fill_store(a, vectors, 5, "keep")
    fill_store(a, vectors, 25, f"trip to {WORD}", day=1, id_prefix="trip")
    fill_store(b, vectors, 2, "server")
    sa, sb = service(a), service(b)
    assert sa.push("share")[0]["ok"]
    assert sb.pull("share")[0]["inserted"] == 30

    journal = Journal(a.data_path / "journal.sqlite3")
    forgot = MemoryService(a, journal, sa.engine).forget(query=WORD)  # type: ignore[arg-type]
    assert forgot["memories"] == 25
    pushed = sa.push("share")[0]  # 25 of 30 gone: an 83 % shrink, explained by tombstones
    assert pushed["ok"] and pushed["memories"] == 5 and not pushed["forced"], pushed
    pulled = sb.pull("share")[0]  # the peer accepts it without --force, and forgets too
    assert pulled["ok"] and pulled["forgot"] == 25, pulled
    assert len(memory_ids(b)) == 7

    # A shrink no forget explains is still refused, both ways.
    drop_rows(a, "keep")
    refused = sa.push("share")[0]
    assert not refused["ok"] and "empty" in refused["refused"], refused
    journal.close()


def test_two_hosts_publish_to_one_folder_each_under_its_own_name(
        tmp_path: Path, models_dir: Path, vectors: list[list[float]]) -> None:
    remote = tmp_path / "share"
    remote.mkdir()
    target = [{"name": "share", "url": f"dir://{remote}", "max_shrink": 0.5, "keep": 2}]
    a = write_config(tmp_path / "a.toml", tmp_path / "a", models_dir, target)
    b = write_config(tmp_path / "b.toml", tmp_path / "b", models_dir, target)
    c = write_config(tmp_path / "c.toml", tmp_path / "c", models_dir, target)
    fill_store(a, vectors, 30, "laptop")
    fill_store(b, vectors, 4, "server")
    fill_store(c, vectors, 1, "phone")
    sa, sb, sc = service(a), service(b), service(c)
    first_a = sa.push("share")[0]
    # B's 4 memories are not a shrink of A's 30: each host is compared with itself
    first_b = sb.push("share")[0]
    assert first_a["ok"] and first_b["ok"], first_b
    names = sorted(p.name for p in remote.iterdir())
    assert f"LATEST.{sa.tag}" in names and f"LATEST.{sb.tag}" in names
    assert (remote / f"LATEST.{sa.tag}").read_text().strip() == first_a["generation"]

    # A third machine reads every host's newest generation.
    got = sc.pull("share")[0]
    assert got["ok"] and got["inserted"] == 34, got
    assert sorted(got["publishers"]) == ["u-a@a", "u-b@b"]
    assert len(memory_ids(c)) == 35

    # A's store loses most of its rows: A's push is refused, B's goes on; the target
    # still names A's good generation.
    drop_rows(a, "laptop")
    fill_store(a, vectors, 3, "laptop")
    refused = sa.push("share")[0]
    assert not refused["ok"] and "shrinks by 90%" in refused["refused"]
    fill_store(b, vectors, 6, "server")
    assert sb.push("share")[0]["ok"]
    assert (remote / f"LATEST.{sa.tag}").read_text().strip() == first_a["generation"]

    # Forced through at A, the shrunken snapshot is refused at C (compared with A's last
    # one there), while B's new one is merged.
    assert sa.push("share", force=True)[0]["ok"]
    pulled = sc.pull("share")[0]
    assert not pulled["ok"] and "shrinks by 90%" in pulled["refused"], pulled
    assert len(memory_ids(c)) == 37  # B's two new rows, nothing of A's shrink
    status = sc.status()["targets"][0]
    assert status["last_good"]["pull"]["publishers"] == ["u-b@b"]
    # each host prunes only its own generations (keep = 2)
    for _ in range(2):
        assert sb.push("share")[0]["ok"]
    names = [p.name for p in remote.iterdir()]
    assert len(generations(names, sb.tag)) == 2 and len(generations(names, sa.tag)) == 2
    assert first_a["generation"] in generations(names, sa.tag)
