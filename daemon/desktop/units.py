"""`memoryd service …`: run the daemon as a systemd user service, a launchd agent, or —
where neither exists (containers, minimal servers) — a detached background process."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

from daemon.config import Config
from daemon.errors import PermanentError

# The unit templates live in the top-level service/ folder (where a packager looks for
# them); daemon/desktop/templates/ holds symlinks to them, so that the wheel carries real
# copies and an installed memoryd needs no source tree (setuptools copies the targets).
TEMPLATES = "templates"
_SOURCE = Path(__file__).resolve().parents[2]  # a clone, if this runs from one
UNIT = Path("~/.config/systemd/user/memoryd.service").expanduser()
PLIST = Path("~/Library/LaunchAgents/dev.memoryd.plist").expanduser()
log = logging.getLogger(__name__)


def _exe() -> str:
    """The `memoryd` of the environment running this code (not whichever is first on PATH,
    which may belong to another install)."""
    if Path(sys.argv[0]).name == "memoryd":
        return str(Path(sys.argv[0]).absolute())
    sibling = Path(sys.executable).with_name("memoryd")
    return str(sibling if sibling.exists() else shutil.which("memoryd") or sibling)


def _systemctl(*args: str) -> None:
    subprocess.run(["systemctl", "--user", *args], check=True)


def has_systemd_user() -> bool:
    if not shutil.which("systemctl"):
        return False
    r = subprocess.run(["systemctl", "--user", "show-environment"], capture_output=True)
    return r.returncode == 0


def manager() -> str:
    if sys.platform == "darwin":
        return "launchd"
    return "systemd" if has_systemd_user() else "background"


def _health(cfg: Config) -> bool:
    from daemon.cli.client import daemon_get

    try:
        daemon_get(cfg, "/health", timeout=2)
        return True
    except Exception:
        return False


def wait_healthy(cfg: Config, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _health(cfg):
            return True
        time.sleep(0.2)
    return False


def template(name: str) -> str:
    """The text of the unit template `name`, from the installed package."""
    return resources.files("daemon.desktop").joinpath(TEMPLATES, name).read_text(encoding="utf-8")


def render_systemd(cfg: Config) -> str:
    """Given the config, return the systemd user unit that runs this memoryd with it."""
    config_arg = f"--config {cfg.source}" if cfg.source else ""
    text = template("memoryd.service")
    text = text.replace("@EXEC@", _exe()).replace("@CONFIG@", config_arg)
    in_clone = (_SOURCE / "pyproject.toml").is_file()
    docs = f"Documentation=file://{_SOURCE / 'README.md'}\n" if in_clone else ""
    text = text.replace("Documentation=@DOCS@\n", docs)
    if os.environ.get("MEMORYD_HOME"):  # the service must see the same data dir
        text = text.replace("[Service]\n", "[Service]\nEnvironment=\"MEMORYD_HOME="
                            f"{os.environ['MEMORYD_HOME']}\"\n", 1)
    return text


def render_launchd(cfg: Config) -> str:
    """Given the config, return the launchd agent's plist that runs this memoryd with it."""
    args = f"<string>--config</string><string>{cfg.source}</string>" if cfg.source else ""
    text = template("dev.memoryd.plist").replace("@EXEC@", _exe())
    text = text.replace("@CONFIG_ARGS@", args)
    return text.replace("@LOG@", str(cfg.data_path / "memoryd.log"))


def install(cfg: Config, start: bool) -> str:
    """Register the daemon with the platform's service manager; return what was done.

    With `start`, a daemon that is already running is restarted, so a re-install (new
    code, new unit) takes effect at once instead of at the next login."""
    how = manager()
    if how == "systemd":
        text = render_systemd(cfg)
        UNIT.parent.mkdir(parents=True, exist_ok=True)
        UNIT.write_text(text)
        _systemctl("daemon-reload")
        if start:
            _systemctl("enable", "memoryd")
            _systemctl("restart", "memoryd")
        return f"systemd user unit {UNIT}"
    if how == "launchd":
        text = render_launchd(cfg)
        PLIST.parent.mkdir(parents=True, exist_ok=True)
        PLIST.write_text(text)
        if start:
            subprocess.run(["launchctl", "unload", str(PLIST)], check=False,
                           stderr=subprocess.DEVNULL)  # not loaded yet is fine
            subprocess.run(["launchctl", "load", "-w", str(PLIST)], check=True)
        return f"launchd agent {PLIST}"
    if start:
        if stop_background(cfg):
            log.info("stopped the running daemon to start the newly installed one")
        start_background(cfg)
    return "a background process (no systemd user session here)"


def start_background(cfg: Config) -> int:
    """Start `memoryd run` detached, logging to <data_dir>/memoryd.log; return its pid."""
    if _health(cfg):
        return read_pid(cfg) or 0
    cfg.data_path.mkdir(parents=True, exist_ok=True)
    log = open(cfg.data_path / "memoryd.log", "ab")
    cmd = [_exe()] + (["--config", cfg.source] if cfg.source else []) + ["run"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True, close_fds=True)
    (cfg.data_path / "memoryd.pid").write_text(f"{proc.pid}\n")
    return proc.pid


def read_pid(cfg: Config) -> int | None:
    try:
        return int((cfg.data_path / "memoryd.pid").read_text())
    except (OSError, ValueError):
        return None


def stop_background(cfg: Config) -> bool:
    pid = read_pid(cfg)
    if pid is None:
        return False
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        (cfg.data_path / "memoryd.pid").unlink(missing_ok=True)  # stale: that daemon is gone
        return False
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    (cfg.data_path / "memoryd.pid").unlink(missing_ok=True)
    return True


def uninstall(cfg: Config) -> str:
    how = manager()
    if how == "systemd" and UNIT.exists():
        subprocess.run(["systemctl", "--user", "disable", "--now", "memoryd"], check=False)
        UNIT.unlink()
        subprocess.run(["systemctl", "--user", "daemon-reload"], check=False)
        return f"removed {UNIT}"
    if how == "launchd" and PLIST.exists():
        subprocess.run(["launchctl", "unload", "-w", str(PLIST)], check=False)
        PLIST.unlink()
        return f"removed {PLIST}"
    if stop_background(cfg):
        return "stopped the background daemon"
    raise PermanentError("no memoryd service is installed here")
