"""`memoryd open` and `memoryd tray`: the desktop's two ways into the daemon."""

from __future__ import annotations

import argparse
import sys
import webbrowser
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from daemon.config import Config
from daemon.errors import DaemonUnavailable

if TYPE_CHECKING:
    import httpx


def request(cfg: Config, method: str, path: str, timeout: float = 10.0) -> httpx.Response:
    """One call to the daemon over its Unix socket with the token; raise DaemonUnavailable
    when no daemon answers (the caller decides what a 4xx means)."""
    if not cfg.socket_path.exists() or not cfg.token_path.exists():
        raise DaemonUnavailable(f"no daemon socket at {cfg.socket_path}; start it with "
                                "`memoryd service start`")
    from daemon.cli.client import socket_request

    return socket_request(cfg.socket_path, method, path,
                          token=cfg.token_path.read_text().strip(), timeout=timeout)


def base_url(cfg: Config) -> str:
    try:
        port = int((cfg.data_path / "api.port").read_text())
    except (OSError, ValueError):
        raise DaemonUnavailable(f"the daemon has not written {cfg.data_path / 'api.port'}; "
                                "is it running?") from None
    return f"http://127.0.0.1:{port}"


def login_url(cfg: Config) -> str:
    """A one-time link that logs a browser into the status page (valid 60 s, one use)."""
    resp = request(cfg, "POST", "/v1/ui/login-code")
    if resp.status_code != 200:
        raise DaemonUnavailable(f"the daemon refused a login code: {resp.text}")
    return base_url(cfg) + resp.json()["path"]


def cmd_open(cfg: Config, args: argparse.Namespace) -> int:
    url = login_url(cfg)
    if args.print_url:
        print(url)
        return 0
    if not webbrowser.open(url):
        print(f"no browser found; open this one-time link within 60 s:\n{url}", file=sys.stderr)
        return 1
    print(f"opened the status page at {base_url(cfg)}/ui")
    return 0


def cmd_tray(cfg: Config, args: argparse.Namespace) -> int:
    from daemon.desktop.tray import run_tray

    return run_tray(cfg, backend=args.backend, poll_seconds=args.poll)


def add_commands(sub: Any, common: argparse.ArgumentParser
                 ) -> dict[str, Callable[[Config, argparse.Namespace], int]]:
    o = sub.add_parser("open", parents=[common],
                       help="open the status page in the browser (logs it in with a one-time link)")
    o.add_argument("--print-url", action="store_true",
                   help="print the one-time link instead of opening a browser")
    t = sub.add_parser("tray", parents=[common], help="show a tray icon with memoryd's health")
    t.add_argument("--backend", choices=["auto", "appindicator", "gtk", "xorg"], default="auto",
                   help="pystray backend (auto: appindicator when it can run, else xorg)")
    t.add_argument("--poll", type=float, default=5.0, help="seconds between status checks")
    return {"open": cmd_open, "tray": cmd_tray}
