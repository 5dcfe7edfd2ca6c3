"""The systemd notify protocol, against a real datagram socket bound by the test: a real
`memoryd run` started with NOTIFY_SOCKET says READY=1, pings WATCHDOG=1 at half of
WATCHDOG_USEC, and says STOPPING=1 on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon.desktop.notify import Watchdog, notify, watchdog_interval


def _bind(path: str | bytes) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(0.2)
    return s


def _drain(s: socket.socket, until: float, want: str) -> list[str]:
    got: list[str] = []
    while time.monotonic() < until:
        try:
            got.append(s.recv(4096).decode())
        except TimeoutError:
            continue
        if any(want in m for m in got):
            break
    return got


def test_notify_reaches_a_path_socket_and_an_abstract_one(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    abstract = f"memoryd-test-{os.getpid()}-{time.monotonic_ns()}"
    with _bind(path) as a, _bind(b"\0" + abstract.encode()) as b:
        assert notify("READY=1", {"NOTIFY_SOCKET": path})
        assert a.recv(100) == b"READY=1"
        assert notify("WATCHDOG=1", {"NOTIFY_SOCKET": "@" + abstract})
        assert b.recv(100) == b"WATCHDOG=1"


def test_notify_is_a_no_op_outside_systemd_and_never_raises(tmp_path: Path) -> None:
    assert notify("READY=1", {}) is False
    assert notify("READY=1", {"NOTIFY_SOCKET": "relative/path"}) is False
    assert notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")}) is False


def test_watchdog_interval_is_half_the_period_and_only_for_this_pid() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "4000000"}) == 2.0
    assert watchdog_interval({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "4000000",
                              "WATCHDOG_PID": str(os.getpid())}) == 2.0
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None


def test_the_watchdog_stops_pinging_when_the_daemon_is_not_alive(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    healthy = [True]
    with _bind(path) as s:
        dog = Watchdog(lambda: healthy[0], 0.05)
        dog.start()
        try:
            assert s.recv(100) == b"WATCHDOG=1"
            healthy[0] = False
            time.sleep(0.2)
            s.setblocking(False)
            while True:  # drop pings sent before the switch
                try:
                    s.recv(100)
                except BlockingIOError:
                    break
            s.settimeout(0.5)
            with pytest.raises(TimeoutError):
                s.recv(100)
        finally:
            dog.stop()


def test_a_real_daemon_speaks_the_notify_protocol(make_config, tmp_path: Path) -> None:
    config = make_config([])
    # A short name: Unix socket paths are limited to ~100 bytes.
    path = f"/tmp/memoryd-notify-{os.getpid()}-{time.monotonic_ns()}.sock"
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="1000000")
    env.pop("WATCHDOG_PID", None)
    log = tmp_path / "daemon.log"
    with _bind(path) as s:
        proc = subprocess.Popen([sys.executable, "-m", "daemon.cli", "--config", str(config),
                                 "run"], env=env, stdout=open(log, "wb"),
                                stderr=subprocess.STDOUT)
        try:
            got = _drain(s, time.monotonic() + 60, "READY=1")
            assert any("READY=1" in m for m in got), (got, log.read_text())
            ready = next(m for m in got if "READY=1" in m)
            assert f"MAINPID={proc.pid}" in ready
            # The socket answers by the time READY=1 arrives.
            assert (tmp_path / "data" / "memoryd.sock").exists()
            pings = [m for m in _drain(s, time.monotonic() + 5, "never") if m == "WATCHDOG=1"]
            assert len(pings) >= 3, (pings, log.read_text())  # every 0.5 s for 5 s
            proc.send_signal(signal.SIGTERM)
            got = _drain(s, time.monotonic() + 60, "STOPPING=1")
            assert "STOPPING=1" in got, (got, log.read_text())
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            Path(path).unlink(missing_ok=True)


def test_alive_needs_both_a_running_scheduler_and_an_answering_api(
        make_config, start_daemon, tmp_path: Path) -> None:
    from apscheduler.schedulers.background import BackgroundScheduler

    from daemon.desktop.notify import Supervision

    d = start_daemon(make_config([], pipeline={"summarize": False}))
    scheduler = BackgroundScheduler(timezone="UTC")
    assert not Supervision(d.socket, scheduler).alive()  # scheduler not started
    scheduler.start()
    try:
        assert Supervision(d.socket, scheduler).alive()
        assert not Supervision(tmp_path / "no-such.sock", scheduler).alive()  # no API
    finally:
        scheduler.shutdown(wait=False)
    assert not Supervision(d.socket, scheduler).alive()  # scheduler stopped
