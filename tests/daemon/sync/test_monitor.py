"""The monitor's states, backoff and resumption, over a real directory target (a share
that is unmounted, then mounted again). The clock is the one fake: the test steps it."""

from __future__ import annotations

from pathlib import Path

from daemon.config import SyncTarget
from daemon.store.engine import Engine
from daemon.sync.monitor import Monitor, backoff
from daemon.sync.service import SyncService
from tests.daemon.sync.conftest import fill_store, write_config


def test_backoff_doubles_up_to_the_cap_with_jitter_between_half_and_all() -> None:
    t = SyncTarget(name="x", url="dir:///x", interval_seconds=2, max_backoff_seconds=30)
    assert backoff(t, 0) == 2
    assert [backoff(t, n, lambda: 1.0) for n in range(1, 7)] == [2, 4, 8, 16, 30, 30]
    assert [backoff(t, n, lambda: 0.0) for n in range(1, 4)] == [1, 2, 4]
    assert all(1 <= backoff(t, 1) <= 2 for _ in range(50))


def test_an_unmounted_share_is_down_backs_off_and_pending_syncs_resume_when_it_returns(
        tmp_path: Path, models_dir: Path, vectors: list[list[float]]) -> None:
    share = tmp_path / "share"  # not there yet: an unmounted network share
    cfg = write_config(tmp_path / "a.toml", tmp_path / "a", models_dir, [{
        "name": "nas", "url": f"dir://{share}", "interval_seconds": 10,
        "max_backoff_seconds": 60}])
    fill_store(cfg, vectors, 8, "laptop")
    now = [1000.0]
    svc = SyncService(cfg, Engine(cfg))
    monitor = Monitor(svc, clock=lambda: now[0], rand=lambda: 1.0)

    out = svc.push("nas")[0]
    assert not out["ok"] and out["pending"] and "is the share mounted" in out["error"]
    monitor.tick()
    status = svc.status()["targets"][0]
    assert status["state"] == "down" and "mounted" in status["reason"]
    assert status["next_probe_in"] == 10  # first retry after one interval
    assert not share.exists()  # never created under an absent mount point
    waits = []
    for _ in range(4):
        now[0] += monitor.next_probe_in("nas") or 0
        monitor.tick()
        waits.append(monitor.next_probe_in("nas"))
    assert waits == [20, 40, 60, 60]
    assert svc.state.target("nas")["failures"] == 5

    share.mkdir()  # mounted again
    now[0] += 60
    monitor.tick()
    status = svc.status()["targets"][0]
    assert status["state"] == "up" and status["pending"] == [] and status["failures"] == 0
    assert status["last_good"]["push"]["memories"] == 8
    assert (share / "LATEST").exists()

    # A restarted daemon (a new service over the same data dir) keeps what is pending.
    share.rename(tmp_path / "share.away")
    assert not svc.push("nas")[0]["ok"]
    again = SyncService(cfg, Engine(cfg))
    assert [p["op"] for p in again.state.pending("nas")] == ["push"]
    (tmp_path / "share.away").rename(share)
    assert Monitor(again).check(cfg.sync.targets[0]) == "up"
    assert again.state.pending("nas") == []
