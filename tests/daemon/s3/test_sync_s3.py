"""`s3://bucket/prefix` as a sync target on a real SeaweedFS: push and pull merge by id,
the guard refuses an emptied store, checksums are verified, and the target going down
and coming back leaves the push pending, then done."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from daemon.config import SyncTarget
from daemon.store.engine import Engine
from daemon.sync.monitor import Monitor
from daemon.sync.s3 import S3Transport
from daemon.sync.service import SyncService
from daemon.sync.snapshot import LATEST
from daemon.sync.transport import TargetRejected, TransportError, open_transport
from tests.daemon.s3.conftest import BUCKET, Weed
from tests.daemon.sync.conftest import fill_store, memory_ids, vectors, write_config  # noqa: F401


def test_the_transport_replaces_whole_files_and_verifies_them(s3: Weed) -> None:
    t = open_transport(SyncTarget(**s3.target(prefix="raw")))
    assert isinstance(t, S3Transport)
    t.probe()
    t.put("a.bin", b"first")
    t.put("a.bin", b"second version")  # replaced in one PUT, never half-written
    t.put("b.bin", b"x" * 100_000)
    assert t.list() == ["a.bin", "b.bin"] and t.get("a.bin") == b"second version"
    with pytest.raises(FileNotFoundError):
        t.get("missing.bin")
    with pytest.raises(ValueError):
        t.put("../escape", b"no")
    # an object altered behind our back (same key, another body, stale checksum) is refused
    client = s3.client()
    meta = client.head_object(Bucket=BUCKET, Key="raw/b.bin")["Metadata"]
    client.put_object(Bucket=BUCKET, Key="raw/b.bin", Body=b"y" * 100_000, Metadata=meta)
    with pytest.raises(TransportError, match="checksum"):
        t.get("b.bin")
    t.delete("b.bin")
    t.delete("b.bin")  # absent is fine
    assert t.list() == ["a.bin"]


def test_wrong_credentials_and_a_missing_bucket_are_rejected_not_retried(
        s3: Weed, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORYD_TEST_S3_SECRET", "not-the-secret")
    with pytest.raises(TargetRejected, match="credentials"):
        open_transport(SyncTarget(**s3.target())).probe()
    monkeypatch.undo()
    monkeypatch.setenv("MEMORYD_TEST_S3_SECRET", "memoryd-test-secret-0123456789")
    t = SyncTarget(**{**s3.target(), "url": "s3://no-such-bucket/x"})
    with pytest.raises(TargetRejected):
        open_transport(t).probe()


def test_push_and_pull_through_a_bucket_and_the_guard_refuses_an_emptied_store(
        tmp_path: Path, models_dir: Path, vectors: list[list[float]], s3: Weed) -> None:  # noqa: F811
    target = [s3.target(prefix="team-sync", keep=2)]
    a = write_config(tmp_path / "a.toml", tmp_path / "a", models_dir, target)
    b = write_config(tmp_path / "b.toml", tmp_path / "b", models_dir, target)
    fill_store(a, vectors, 30, "laptop")
    fill_store(b, vectors, 4, "server")
    out = SyncService(a, Engine(a)).push("bucket")[0]
    assert out["ok"] and out["memories"] == 30
    names = open_transport(a.sync.targets[0]).list()
    assert LATEST in names and f"{out['generation']}.manifest.json" in names

    sb = SyncService(b, Engine(b))
    pulled = sb.pull("bucket")[0]
    assert pulled["ok"] and pulled["inserted"] == 30 and pulled["total"] == 34
    assert sb.pull("bucket", force=True)[0]["inserted"] == 0  # merge by id: no duplicates
    assert len(memory_ids(b)) == 34

    # an accident empties A's store: the guard refuses to publish it over the good one
    import shutil

    shutil.rmtree(a.data_path / "store")
    fill_store(a, vectors, 0, "none")
    refused = SyncService(a, Engine(a)).push("bucket")[0]
    assert not refused["ok"] and "empty" in refused["refused"]
    assert open_transport(a.sync.targets[0]).get(LATEST).decode().strip() == out["generation"]


def test_the_bucket_down_leaves_the_push_pending_and_it_completes_when_back(
        tmp_path: Path, models_dir: Path, vectors: list[list[float]], s3: Weed) -> None:  # noqa: F811
    a = write_config(tmp_path / "a.toml", tmp_path / "a", models_dir,
                     [s3.target(prefix="outage-sync", timeout_seconds=3, interval_seconds=1)])
    t = a.sync.targets[0]
    fill_store(a, vectors, 12, "first")
    svc = SyncService(a, Engine(a))
    first = svc.push_target(t)
    fill_store(a, vectors, 40, "second")
    s3.kill()
    try:
        with pytest.raises(TransportError):
            svc.push_target(t)
        assert Monitor(svc).check(t) == "down"
        pending = svc.state.pending("bucket")
        assert pending and pending[0]["op"] == "push"
    finally:
        s3.start()
    # back: the monitor's next probes see it (a restarted gateway may answer 500 for a
    # moment while its volumes rejoin: "degraded", probed again) and the pending push runs
    monitor = Monitor(svc)
    states = [monitor.check(t)]
    while states[-1] != "up" and len(states) < 20:
        time.sleep(1)
        states.append(monitor.check(t))
    assert states[-1] == "up", states
    assert svc.state.pending() == []
    last = svc.status()["targets"][0]["last_good"]["push"]
    assert last["memories"] == 52 and last["generation"] != first["generation"]

    b = write_config(tmp_path / "b.toml", tmp_path / "b", models_dir, [s3.target(prefix="outage-sync")])
    fill_store(b, vectors, 0, "none")
    assert SyncService(b, Engine(b)).pull("bucket")[0]["inserted"] == 52
