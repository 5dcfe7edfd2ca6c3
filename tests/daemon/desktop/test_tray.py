"""The tray, for real: `memoryd tray` under Xvfb docks into Debian's trayer (an XEmbed
tray host), its colour follows the daemon's health (healthy, paused, unavailable while
the daemon restarts, healthy again), a left-click opens the status page with a one-time
link, it quits within a bound, and a screenshot is taken. The menu actions are checked
against a real daemon through the same DaemonLink the menu calls."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon.config import load_config
from daemon.desktop.tray import COLOURS, DaemonLink, judge
from tests.conftest import Daemon

SCREENSHOTS = Path(__file__).resolve().parents[3] / "bench" / "screenshots"
X_TOOLS = ("Xvfb", "trayer", "xdotool", "xwininfo", "import")


def test_the_colour_says_healthy_degraded_unavailable_or_paused() -> None:
    ok = {"journal": {"total": 3}, "memory": {"available": True}, "paused": None,
          "collectors": {"running": [{"name": "files", "last_error": None}]}}
    assert judge(ok, None).state == "ok"
    assert judge(ok, {"targets": [{"name": "nas", "state": "up"}]}).state == "ok"
    h = judge(ok, {"targets": [{"name": "nas", "state": "down"}]})
    assert h.state == "degraded" and "nas" in h.line
    broken = dict(ok, memory={"available": True, "degraded": [
        {"code": "collector_failed", "message": "the shell collector is failing: gone",
         "since": "2026-12-02T20:00:00Z", "subject": "shell"}]})
    assert judge(broken, None).state == "degraded" and "shell" in judge(broken, None).line
    assert judge(dict(ok, memory={"available": False}), None).state == "unavailable"
    full = judge(dict(ok, memory={"available": False, "degraded": [
        {"code": "store_full", "message": "the disk holding memory is full",
         "since": "2026-12-02T20:00:00Z"}]}), None)
    assert full.state == "unavailable" and "disk holding memory is full" in full.line
    assert judge(None, None, "no daemon socket").state == "unavailable"
    assert judge(dict(broken, paused={"since": 1}), None).state == "paused"


def test_the_menu_actions_act_on_a_real_daemon(make_config, start_daemon) -> None:
    config = make_config([], pipeline={"summarize": False})
    d = start_daemon(config)
    link = DaemonLink(load_config(config))
    assert link.check().state == "ok"
    assert link.toggle_pause() == "collection paused"
    with d.unix() as u:
        assert u.get("/v1/status", headers=d.auth()).json()["paused"]
    assert link.health.state == "paused"
    assert link.toggle_pause() == "collection resumed"
    with d.unix() as u:
        assert not u.get("/v1/status", headers=d.auth()).json()["paused"]
    assert link.sync_now() == "sync not configured"  # no [[sync.targets]] in this config
    opened: list[str] = []

    def opener(url: str) -> bool:
        opened.append(url)
        return True

    assert link.open_page(opener) == "status page opened"
    assert re.fullmatch(rf"http://127\.0\.0\.1:{d.port}/ui/login\?code=\S+", opened[0])


@pytest.fixture
def xserver(tmp_path: Path) -> Iterator[str]:
    missing = [t for t in X_TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (tests/apt-packages.txt lists them)")
    r, w = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "640x240x24",
                             "-nolisten", "tcp"], pass_fds=(w,), stderr=subprocess.DEVNULL)
    os.close(w)
    with os.fdopen(r) as fh:
        display = ":" + fh.readline().strip()
    env = dict(os.environ, DISPLAY=display)
    tray_host = subprocess.Popen(["trayer", "--edge", "top", "--align", "right",
                                  "--widthtype", "pixel", "--width", "160", "--heighttype",
                                  "pixel", "--height", "32", "--transparent", "false",
                                  "--tint", "0x1d2330", "--SetDockType", "true"],
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield display
    finally:
        for p in (tray_host, xvfb):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _icon(display: str) -> tuple[str, str] | None:
    """The tray icon's X window id and title, if it is docked in the tray host."""
    tree = subprocess.run(["xwininfo", "-root", "-tree"], capture_output=True, text=True,
                          env=dict(os.environ, DISPLAY=display)).stdout
    m = re.search(r'(0x[0-9a-f]+) "(memoryd: [^"]*)": \("memoryd(?:SystemTrayIcon)?"', tree)
    if not m:
        return None
    info = subprocess.run(["xwininfo", "-children", "-id", m.group(1)], capture_output=True,
                          text=True, env=dict(os.environ, DISPLAY=display)).stdout
    root = re.search(r"Root window id: (0x[0-9a-f]+)", info)
    parent = re.search(r"Parent window id: (0x[0-9a-f]+)", info)
    docked = root and parent and parent.group(1) != root.group(1)
    return (m.group(1), m.group(2)) if docked else None


def _wait_title(display: str, pattern: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = _icon(display)
        if seen and re.search(pattern, seen[1]):
            return seen[0]
        time.sleep(0.2)
    raise AssertionError(f"the tray icon never said {pattern!r} (last: {seen})")


def _colour_at(display: str, wid: str, shot: Path) -> tuple[int, int, int]:
    from PIL import Image

    env = dict(os.environ, DISPLAY=display)
    subprocess.run(["import", "-window", "root", str(shot)], env=env, check=True)
    geo = subprocess.run(["xwininfo", "-id", wid], capture_output=True, text=True,
                         env=env).stdout
    x = int(re.search(r"Absolute upper-left X:\s+(-?\d+)", geo).group(1))  # type: ignore[union-attr]
    y = int(re.search(r"Absolute upper-left Y:\s+(-?\d+)", geo).group(1))  # type: ignore[union-attr]
    w = int(re.search(r"Width:\s+(\d+)", geo).group(1))  # type: ignore[union-attr]
    h = int(re.search(r"Height:\s+(\d+)", geo).group(1))  # type: ignore[union-attr]
    px = Image.open(shot).convert("RGB").getpixel((x + w // 2, y + h // 2 - 4))
    return px  # type: ignore[return-value]


def _near(c: tuple[int, int, int], want: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 40 for a, b in zip(c, want, strict=True))


def _shows(display: str, wid: str, shot: Path, state: str, timeout: float = 10) -> bool:
    """Whether the icon is painted in `state`'s colour within `timeout` (the tray host
    may embed the window a moment before the icon paints it)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = _colour_at(display, wid, shot)
        if _near(seen, COLOURS[state]):
            return True
        if time.monotonic() > deadline:
            raise AssertionError(f"the icon is {seen}, not {state} {COLOURS[state]}")
        time.sleep(0.3)


def _appindicator_missing() -> str:
    """Why the appindicator backend cannot run here, or "" if it can."""
    if shutil.which("dbus-run-session") is None:
        return "dbus-run-session is not installed (dbus)"
    try:
        import gi

        gi.require_version("Gtk", "3.0")
        gi.require_version("AyatanaAppIndicator3", "0.1")
    except (ImportError, ValueError) as exc:
        return (f"no PyGObject/AyatanaAppIndicator3 ({exc}); install.sh --test installs "
                "gir1.2-ayatanaappindicator3-0.1 and the tray extra")
    return ""


@dataclass
class Run:
    daemon: Daemon
    display: str
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    opened: Path
    log: Path
    tmp: Path


@pytest.mark.parametrize("backend", ["xorg", "appindicator"])
def test_the_tray_under_xvfb_with_a_real_tray_host(backend: str, make_config, start_daemon,
                                                   xserver: str, tmp_path: Path) -> None:
    if backend == "appindicator" and (why := _appindicator_missing()):
        pytest.skip(why)
    config = make_config([], pipeline={"summarize": False})
    d = start_daemon(config)
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"  # stands in for the desktop's browser: records the URL
    browser.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> {opened}\n')
    browser.chmod(0o755)
    env = dict(os.environ, DISPLAY=xserver, BROWSER=str(browser), NO_AT_BRIDGE="1")
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    cmd = [sys.executable, "-m", "daemon.cli", "--config", str(config), "-v", "tray",
           "--backend", backend, "--poll", "0.5"]
    if backend == "appindicator":  # its own D-Bus session, as a desktop session has
        cmd = ["dbus-run-session", "--", *cmd]
    log = tmp_path / "tray.log"
    proc = subprocess.Popen(cmd, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    run = Run(d, xserver, env, proc, opened, log, tmp_path)
    try:
        _steps(run, backend, config, start_daemon)
    except AssertionError as exc:
        if proc.poll() is None:  # say where the tray is stuck: faulthandler on SIGUSR1
            import psutil

            me = psutil.Process(proc.pid)
            for p in [me, *me.children(recursive=True)]:
                if "daemon.cli" in " ".join(p.cmdline()):
                    p.send_signal(signal.SIGUSR1)
            time.sleep(1)
        raise AssertionError(f"{exc}\n--- tray log:\n{log.read_text()}") from exc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _click(run: Run, wid: str) -> None:
    subprocess.run(["xdotool", "mousemove", "--window", wid, "8", "8", "click", "1"],
                   env=run.env, check=True)


def _menu(run: Run, wid: str, *keys: str) -> None:
    """Open the icon's menu and pick an item with the keyboard, as a user may."""
    _click(run, wid)
    time.sleep(0.8)  # the menu maps and grabs the keyboard
    subprocess.run(["xdotool", "key", *keys], env=run.env, check=True)


def _paused(run: Run) -> bool:
    with run.daemon.unix() as u:
        return bool(u.get("/v1/status", headers=run.daemon.auth()).json()["paused"])


def _steps(run: Run, backend: str, config: Path, start_daemon: Any) -> None:
    d, x = run.daemon, run.display
    wid = _wait_title(x, r"^memoryd: healthy")
    assert _shows(x, wid, run.tmp / "ok.png", "ok")
    shot = run.tmp / "tray.png"
    if backend == "xorg":
        # no menu on this backend: a left-click opens the status page, logged in once
        _click(run, wid)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not run.opened.exists():
            time.sleep(0.1)
        urls = run.opened.read_text().split()
        assert len(urls) == 1, urls
        with httpx.Client(follow_redirects=True) as c:
            r = c.get(urls[0])  # follows the redirect to the clean page
        assert r.status_code == 200 and str(r.url) == f"http://127.0.0.1:{d.port}/ui"
        with d.unix() as u:  # pause from elsewhere (the page, the CLI): the icon follows
            assert u.post("/v1/pause", headers=d.auth()).status_code == 200
        wid = _wait_title(x, r"^memoryd: collection paused")
    else:
        # the menu: status line (inactive), Pause, Sync now, Open, Quit
        _menu(run, wid, "Down", "Return")
        wid = _wait_title(x, r"^memoryd: collection paused")
        assert _paused(run)  # the menu really paused collection
        _click(run, wid)  # open the menu again for the screenshot
        time.sleep(0.8)
        subprocess.run(["import", "-window", "root", str(run.tmp / "menu.png")],
                       env=run.env, check=True)
        subprocess.run(["xdotool", "key", "Escape"], env=run.env, check=True)
    assert _shows(x, wid, shot, "paused")
    _save_screenshots(backend, shot, run.tmp / "menu.png")
    if backend == "xorg":
        with d.unix() as u:
            assert u.post("/v1/resume", headers=d.auth()).status_code == 200
    else:
        _menu(run, wid, "Down", "Return")  # now "Resume collection"
    _wait_title(x, r"^memoryd: healthy")
    assert not _paused(run)

    # the daemon restarts: the icon turns red meanwhile and green again after
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(timeout=60) == 0
    wid = _wait_title(x, r"^memoryd: memory unavailable")
    assert _shows(x, wid, run.tmp / "down.png", "unavailable")
    run.daemon = start_daemon(config)
    wid = _wait_title(x, r"^memoryd: healthy")
    assert run.proc.poll() is None, run.log.read_text()

    # quitting ends the process within a bound, whatever pystray's stop() does
    if backend == "xorg":
        run.proc.send_signal(signal.SIGTERM)
    else:
        _menu(run, wid, "Up", "Return")  # the last item: Quit tray
    assert run.proc.wait(timeout=10) == 0, run.log.read_text()
    assert _icon(x) is None


def _save_screenshots(backend: str, shot: Path, menu: Path) -> None:
    """Keep the tray host's strip, enlarged, next to the benchmarks for the closing note."""
    from PIL import Image

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    img = Image.open(shot).convert("RGB")
    crop = img.crop((img.width - 200, 0, img.width, 40))
    crop = crop.resize((crop.width * 4, crop.height * 4), Image.Resampling.NEAREST)
    crop.save(SCREENSHOTS / f"tray-{backend}.png")
    if menu.exists():
        shutil.copy(menu, SCREENSHOTS / "tray-menu.png")
