"""Several writer processes on one new store, started at the same instant, each running
every write path (create, index, upsert, delete, optimize, cleanup) while the others
do: none fails, every row is there once, nothing deleted is back, and the conflicts
they retried are counted per write path. A store of a newer schema is refused before
anything is written; conflicts that never end become a retryable StoreConflict."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import lancedb
import pyarrow as pa
import pytest
import tomli_w

from daemon.config import load_config
from daemon.errors import RetryableError, StoreConflict, StoreTooNew
from daemon.store.lance import Store, events_schema, memories_schema, open_store
from daemon.store.retry import retrying
from daemon.store.tables import dedupe

EMBEDDER = "all-minilm-l6-v2"
REPO = Path(__file__).resolve().parents[3]


def race(tmp: Path, configs: list[Path], rounds: int,
         logs: list[str] | None = None) -> list[dict[str, Any]]:
    """Start one racer per config; release them at once; return their reports (and
    their stderr in `logs`)."""
    go = tmp / "go"
    procs = [subprocess.Popen([sys.executable, "-m", "tests.daemon.store.racer", str(c),
                               str(n), str(go), str(rounds)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n, c in enumerate(configs)]
    go.touch()
    reports = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-4000:]
        if logs is not None:
            logs.append(err)
        reports.append(json.loads(out.strip().splitlines()[-1]))
    go.unlink()
    return reports


def check(store: Store, reports: list[dict[str, Any]]) -> dict[str, int]:
    """Every kept row once, nothing deleted back; return conflicts retried per path."""
    ids = store.events.to_arrow().column("id").to_pylist()
    counts = Counter(ids)
    assert all(n == 1 for n in counts.values()), [i for i, n in counts.items() if n > 1]
    for r in reports:
        assert set(r["kept"]) <= set(ids), set(r["kept"]) - set(ids)
        assert not set(r["deleted"]) & set(ids)
    mems = store.memories.to_arrow().column("id").to_pylist()
    assert sorted(mems) == sorted(m for r in reports for m in r["memories"])
    assert [i.index_type for i in store.events.list_indices()] == ["FTS"]
    assert store.text_search("events", "writer", 5)  # the one index serves searches
    retried: Counter[str] = Counter()
    for r in reports:
        assert not any(c["gave_up"] for c in r["conflicts"].values()), r["conflicts"]
        retried.update({p: c["retried"] for p, c in r["conflicts"].items()})
    print("conflicts retried per write path:", dict(retried))
    return dict(retried)


def config(tmp: Path, n: int, **store: Any) -> Path:
    path = tmp / f"racer{n}.toml"
    path.write_text(tomli_w.dumps({
        "data_dir": str(tmp / "data"), "identity": {"device": f"d{n}", "user": f"u{n}"},
        "store": {"optimize_rows": 6, "cleanup_grace_seconds": 60, **store}}))
    return path


def test_writers_started_at_once_on_a_new_local_store_lose_and_duplicate_nothing(
        tmp_path: Path) -> None:
    configs = [config(tmp_path, n) for n in range(3)]
    reports = race(tmp_path, configs, rounds=8)
    check(open_store(load_config(configs[0]), 384, EMBEDDER), reports)


def test_a_store_of_a_newer_schema_is_refused_and_not_written(tmp_path: Path) -> None:
    db = lancedb.connect(str(tmp_path / "store"))
    for name, schema in (("events", events_schema(384, EMBEDDER)),
                         ("memories", memories_schema(384, EMBEDDER))):
        newer = schema.with_metadata({**schema.metadata, b"memoryd.schema_version": b"99"})
        db.create_table(name, schema=newer)
    with pytest.raises(StoreTooNew, match="newer memoryd.*writes nothing.*Upgrade memoryd"):
        Store(tmp_path / "store", 384, EMBEDDER)
    for name in ("events", "memories"):  # not indexed, not migrated: not written at all
        table = db.open_table(name)
        assert table.version == 1 and table.list_indices() == []


def test_conflicts_that_never_end_become_a_retryable_error(monkeypatch: Any) -> None:
    # A stand-in for a commit that always loses (a real one cannot be held lost forever).
    import daemon.store.retry as retry

    monkeypatch.setattr(retry, "CAP_SECONDS", 0.001)
    tries: list[int] = []

    def always_preempted() -> None:
        tries.append(1)
        raise OSError("Commit conflict for version 7: This Delete transaction was preempted "
                      "by concurrent transaction CreateIndex at version 7. Please retry.")

    with pytest.raises(StoreConflict, match="kept changing.*Nothing was committed") as err:
        retrying("forget", always_preempted, where="/tmp/x", attempts=4)
    assert isinstance(err.value, RetryableError) and len(tries) == 4
    assert retry.conflict_counts()["forget"]["gave_up"] >= 1
    with pytest.raises(ValueError):  # anything else is not retried
        retrying("forget", lambda: (_ for _ in ()).throw(ValueError("bad filter")))


class CompactsBeforeEachDelete:
    """A LanceDB table whose first delete commits after a compaction that moved the rows
    it names: what another writer's optimize does between a dedupe's read and delete."""

    def __init__(self, table: Any) -> None:
        self.table, self.deletes = table, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.table, name)

    def delete(self, where: str) -> None:
        self.deletes += 1
        if self.deletes == 1:
            self.table.optimize()
        self.table.delete(where)


def test_copies_a_compaction_moved_before_their_delete_are_read_again_and_removed(
        tmp_path: Path) -> None:
    db = lancedb.connect(str(tmp_path / "store"))
    table = db.create_table("events", schema=pa.schema([("id", pa.string()),
                                                        ("n", pa.int64())]))
    for n in range(3):  # three copies of one id, each in a fragment of its own
        table.add([{"id": "shared", "n": n}, {"id": f"own-{n}", "n": n}])
    moving = CompactsBeforeEachDelete(table)
    assert dedupe(moving, ["shared", "own-0"]) == 4  # 2 missed, then 2 removed
    assert moving.deletes == 2
    rows = table.to_arrow().to_pylist()
    assert sorted(r["id"] for r in rows) == ["own-0", "own-1", "own-2", "shared"]
