"""Two real daemons syncing over HTTP; the peer stops and comes back."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from daemon.config import SyncTarget
from daemon.sync.http import HttpTransport
from daemon.sync.transport import TargetRejected
from tests.conftest import run_cli
from tests.daemon.sync.conftest import fill_store, free_port, write_config


def wait_for(fn: Any, timeout: float = 60, step: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")


def test_two_daemons_push_and_pull_and_recover_when_the_peer_restarts(
        tmp_path: Path, models_dir: Path, vectors: list[list[float]], start_daemon: Any) -> None:
    port_b = free_port()
    b_cfg = tmp_path / "b.toml"
    b = write_config(b_cfg, tmp_path / "b", models_dir, port=port_b)
    fill_store(b, vectors, 6, "server")
    a_cfg = tmp_path / "a.toml"
    a = write_config(a_cfg, tmp_path / "a", models_dir, [{
        "name": "peer", "url": f"http://127.0.0.1:{port_b}",
        "token_file": str(b.data_path / "token"),
        "interval_seconds": 1, "max_backoff_seconds": 2, "timeout_seconds": 3}])
    fill_store(a, vectors, 20, "laptop")
    daemon_b = start_daemon(b_cfg, b.data_path)
    daemon_a = start_daemon(a_cfg, a.data_path)

    pushed = run_cli(a_cfg, "sync", "push", "--target", "peer")
    assert "published" in pushed.stdout and "20 memories" in pushed.stdout
    with daemon_b.unix() as c:
        inbound = c.get("/v1/sync/status", headers=daemon_b.auth()).json()["inbound"]
    assert inbound["last_good"]["inserted"] == 20 and inbound["last_good"]["total"] == 26

    # Without the right token the peer answers nothing; a damaged upload is refused.
    bad = SyncTarget(name="x", url=f"http://127.0.0.1:{port_b}", token_env="MEMORYD_NO_SUCH",
                     timeout_seconds=3)
    os.environ["MEMORYD_NO_SUCH"] = "wrong"
    try:
        with pytest.raises(TargetRejected, match="refused the token"):
            HttpTransport(bad).probe()
    finally:
        del os.environ["MEMORYD_NO_SUCH"]
    with daemon_b.tcp() as c:
        resp = c.put("/v1/sync/files/evil.txt", content=b"payload", headers={
            **daemon_b.auth(), "X-Memoryd-Sha256": "0" * 64})
        assert resp.status_code == 400 and "damaged" in resp.json()["error"]["message"]
        assert "evil.txt" not in c.get("/v1/sync/files", headers=daemon_b.auth()).json()["files"]

    pulled = run_cli(a_cfg, "sync", "pull", "--target", "peer")
    # A's own 20 rows in B's union are not merged again (a peer never rewrites ours)
    assert "6 new of 6, 20 of ours already here" in pulled.stdout, pulled.stdout
    with daemon_a.unix() as c:
        assert c.get("/v1/status", headers=daemon_a.auth()).json()["engine"]["store"][
            "memories"] == 26

    def a_status() -> dict[str, Any]:
        with daemon_a.unix() as c:
            return dict(c.get("/v1/status", headers=daemon_a.auth()).json())

    assert wait_for(lambda: a_status()["sync"]["targets"][0]["state"] == "up")

    # The peer stops: the monitor notices, and memory.available says why.
    daemon_b.proc.send_signal(signal.SIGTERM)
    daemon_b.proc.wait(timeout=60)
    stopped = time.monotonic()
    status = wait_for(lambda: (s := a_status())["memory"].get("sync_available") is False and s)
    detected = time.monotonic() - stopped
    assert "peer" in status["memory"]["reason"] and "down" in status["memory"]["reason"]
    target = status["sync"]["targets"][0]
    assert target["state"] == "down" and target["since"]

    # A push meanwhile stays pending (exit 3) ...
    fill_store(a, vectors, 4, "offline")
    proc = run_cli(a_cfg, "sync", "push", check=False)
    assert proc.returncode == 3 and "pending" in proc.stderr, proc.stderr
    # ... and goes through by itself once the peer is back.
    daemon_b = start_daemon(b_cfg, b.data_path)
    restarted = time.monotonic()  # the peer answers /health again
    wait_for(lambda: a_status()["sync"]["targets"][0]["state"] != "down", step=0.05)
    seen_up = time.monotonic() - restarted
    status = wait_for(lambda: (s := a_status())["sync"]["targets"][0]["pending"] == [] and
                      s["sync"]["targets"][0]["state"] == "up" and s)
    recovered = time.monotonic() - restarted
    last = status["sync"]["targets"][0]["last_good"]["push"]
    assert last["memories"] == 30 and last["peer"]["inserted"] == 4
    sync_status = json.loads(run_cli(a_cfg, "sync", "status", "--json").stdout)
    t = sync_status["targets"][0]
    assert t["state"] == "up" and t["last_good"]["push"]["generation"] == last["generation"]
    assert t["last_refusal"] is None
    print(f"\nHTTP peer (probe interval 1 s, backoff cap 2 s): outage detected in "
          f"{detected:.1f} s; after the peer answered again: seen up in {seen_up:.1f} s, "
          f"pending push delivered and merged in {recovered:.1f} s")
