"""Service definitions: the systemd unit verifies, the launchd plist parses (macOS's
launchd cannot run here, so the plist is checked as data, not loaded)."""

from __future__ import annotations

import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.desktop import units
from daemon.config import load_config


def test_the_systemd_unit_verifies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    exe = tmp_path / "memoryd"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    monkeypatch.setattr(units, "_exe", lambda: str(exe))
    monkeypatch.setattr(units, "UNIT", tmp_path / "memoryd.service")
    monkeypatch.setattr(units, "manager", lambda: "systemd")
    monkeypatch.setattr(units, "_systemctl", lambda *a: None)  # no user manager here
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text(f'data_dir = "{tmp_path}/d"\n')
    units.install(load_config(cfg_file), start=False)
    text = (tmp_path / "memoryd.service").read_text()
    assert f"ExecStart={exe} --config {cfg_file} run" in text
    # The daemon speaks the notify protocol (tests/daemon/test_notify.py), so the unit
    # waits for READY=1 and restarts a daemon whose watchdog pings stop.
    for line in ("Type=notify", "NotifyAccess=main", "WatchdogSec=60", "Restart=on-failure",
                 "StandardError=journal", "NoNewPrivileges=true"):
        assert line in text.splitlines(), line
    runtime = tmp_path / "runtime"  # a user manager's runtime dir, as a session would have
    runtime.mkdir(mode=0o700)
    proc = subprocess.run(["systemd-analyze", "verify", "--user", str(tmp_path / "memoryd.service")],
                          capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(runtime)})
    problems = [line for line in proc.stderr.splitlines() if "memoryd.service" in line]
    assert proc.returncode == 0 and not problems, proc.stderr


def test_the_launchd_plist_parses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(units, "_exe", lambda: "/opt/memoryd/bin/memoryd")
    monkeypatch.setattr(units, "PLIST", tmp_path / "dev.memoryd.plist")
    monkeypatch.setattr(units, "manager", lambda: "launchd")
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text(f'data_dir = "{tmp_path}/d"\n')
    units.install(load_config(cfg_file), start=False)
    plist = plistlib.loads((tmp_path / "dev.memoryd.plist").read_bytes())
    assert plist["Label"] == "dev.memoryd"
    assert plist["ProgramArguments"] == ["/opt/memoryd/bin/memoryd", "--config", str(cfg_file),
                                         "run"]
    assert plist["RunAtLoad"] is True
    assert plist["StandardErrorPath"].endswith("memoryd.log")


def test_without_a_service_manager_the_daemon_runs_in_the_background(make_config,
                                                                     tmp_path: Path) -> None:
    from tests.conftest import run_cli

    cfg = make_config([])
    try:
        out = run_cli(cfg, "service", "start", timeout=120)
        assert out.returncode == 0
        assert run_cli(cfg, "service", "status").returncode == 0
        pid = int((tmp_path / "data" / "memoryd.pid").read_text())
        assert Path(f"/proc/{pid}").exists()
        # Installing again (install.sh re-run with new code) replaces the running daemon.
        assert run_cli(cfg, "service", "install", "--start", timeout=120).returncode == 0
        new_pid = int((tmp_path / "data" / "memoryd.pid").read_text())
        assert new_pid != pid and Path(f"/proc/{new_pid}").exists()
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(
            f"/proc/{pid}/status").read_text()
    finally:
        run_cli(cfg, "service", "uninstall", check=False)
    assert run_cli(cfg, "service", "status", check=False).returncode == 3


@pytest.mark.skipif(sys.platform != "darwin", reason="launchd exists only on macOS; on this "
                    "machine the plist is checked as data by test_the_launchd_plist_parses")
def test_launchctl_accepts_the_plist(tmp_path: Path) -> None:  # pragma: no cover - macOS
    monkey = pytest.MonkeyPatch()
    monkey.setattr(units, "PLIST", tmp_path / "dev.memoryd.plist")
    monkey.setattr(units, "manager", lambda: "launchd")
    try:
        units.install(load_config(None), start=False)
        subprocess.run(["plutil", "-lint", str(tmp_path / "dev.memoryd.plist")], check=True)
    finally:
        monkey.undo()
