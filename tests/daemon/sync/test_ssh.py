"""Sync over SSH to a real OpenSSH server on 127.0.0.1, killed and frozen mid-way."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

from daemon.store.engine import Engine
from daemon.sync.monitor import Monitor
from daemon.sync.service import SyncService
from daemon.sync.snapshot import LATEST
from daemon.sync.transport import TargetRejected, TransportError
from tests.daemon.sync.conftest import Sshd, fill_store, memory_ids, write_config


def test_ssh_push_cut_by_a_dead_sshd_resumes_after_restart_and_the_remote_stays_intact(
        tmp_path: Path, models_dir: Path, vectors: list[list[float]], sshd: Sshd) -> None:
    a = write_config(tmp_path / "a.toml", tmp_path / "a", models_dir,
                     [sshd.target(timeout_seconds=5, interval_seconds=1)])
    t = a.sync.targets[0]
    fill_store(a, vectors, 10, "first")
    # small parts, so the transfer has many steps to be cut between
    svc = SyncService(a, Engine(a), part_bytes=4096)
    first = svc.push_target(t)
    assert first["memories"] == 10
    assert (sshd.root / LATEST).read_text().strip() == first["generation"]

    fill_store(a, vectors, 150, "second")
    parts_seen = threading.Event()
    before = {p.name for p in sshd.root.iterdir()}

    def kill_when_parts_land() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            landed = [p for p in sshd.root.iterdir()  # complete new parts, not in flight
                      if p.name.startswith("seg-") and p.name not in before]
            if landed:
                sshd.kill()
                parts_seen.set()
                return
            time.sleep(0.002)

    killer = threading.Thread(target=kill_when_parts_land)
    killer.start()
    with pytest.raises(TransportError, match="stays pending"):
        svc.push_target(t)
    killer.join()
    assert parts_seen.is_set()
    # The remote still names the first, complete generation; the new one is partial.
    assert (sshd.root / LATEST).read_text().strip() == first["generation"]
    pending = svc.state.pending("agent-host")
    assert pending[0]["op"] == "push" and pending[0]["generation"] and pending[0]["attempts"] == 1

    # The monitor sees it down; after a restart of sshd (and of our side: a new
    # service over the same data dir, as after a daemon restart) the push resumes.
    monitor = Monitor(svc)
    assert monitor.check(t) == "down"
    assert "down" == svc.status()["targets"][0]["state"]
    sshd.start()
    svc2 = SyncService(a, Engine(a), part_bytes=4096)
    assert Monitor(svc2).check(t) == "up"
    assert svc2.state.pending() == []
    last = svc2.status()["targets"][0]["last_good"]["push"]
    assert last["resumed"] and last["skipped"] >= 1 and last["memories"] == 160
    assert last["generation"] == pending[0]["generation"]

    # What landed is whole: a second machine pulls it over SSH and gets every memory.
    b = write_config(tmp_path / "b.toml", tmp_path / "b", models_dir,
                     [sshd.target(timeout_seconds=5)])
    fill_store(b, vectors, 0, "none")
    pulled = SyncService(b, Engine(b)).pull_target(b.sync.targets[0])
    assert pulled["inserted"] == 160 and len(memory_ids(b)) == 160


def test_a_frozen_sshd_is_noticed_within_the_timeout_not_waited_on(
        tmp_path: Path, models_dir: Path, sshd: Sshd) -> None:
    from daemon.sync.ssh import SshTransport

    cfg = write_config(tmp_path / "a.toml", tmp_path / "a", models_dir,
                       [sshd.target(timeout_seconds=3)])
    transport = SshTransport(cfg.sync.targets[0])
    transport.put("hello.txt", b"hello")
    assert transport.list() == ["hello.txt"] and transport.get("hello.txt") == b"hello"
    sshd.signal(signal.SIGSTOP)  # the server hangs: a frozen VM or a stuck tunnel
    try:
        started = time.monotonic()
        with pytest.raises(TransportError):
            transport.probe()
        assert time.monotonic() - started < 3 * 4 + 5  # bounded, not forever
    finally:
        sshd.signal(signal.SIGCONT)
    transport.probe()


def test_an_unknown_host_key_is_refused_never_accepted(
        tmp_path: Path, models_dir: Path, sshd: Sshd) -> None:
    from daemon.sync.ssh import SshTransport

    sshd.known_hosts.write_text("")  # this host key is not known
    cfg = write_config(tmp_path / "a.toml", tmp_path / "a", models_dir,
                       [sshd.target(timeout_seconds=3)])
    with pytest.raises(TargetRejected, match="Host key verification failed"):
        SshTransport(cfg.sync.targets[0]).probe()
    assert sshd.known_hosts.read_text() == ""  # nothing was added behind the user's back
