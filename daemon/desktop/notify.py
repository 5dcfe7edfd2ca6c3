"""systemd's notify protocol, spoken directly: READY=1 once the API serves, WATCHDOG=1
while the daemon is alive, STOPPING=1 on the way out.

The protocol is one datagram per message to the Unix socket named in $NOTIFY_SOCKET
(a leading `@` means the Linux abstract namespace). Outside systemd the variable is
unset and every call here does nothing, so the daemon runs the same everywhere.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon.errors import DaemonUnavailable

log = logging.getLogger(__name__)


def _address(raw: str) -> str | bytes:
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()
    return raw


def notify(message: str, env: dict[str, str] | None = None) -> bool:
    """Send `message` (e.g. "READY=1") to the service manager; return whether it was sent.

    Never raises: a manager that went away must not take the daemon with it."""
    raw = (env if env is not None else os.environ).get("NOTIFY_SOCKET", "")
    if not raw or raw[0] not in "/@":
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(_address(raw))
            s.sendall(message.encode())
        return True
    except OSError as exc:
        log.warning("could not notify the service manager at %s: %s", raw, exc)
        return False


def watchdog_interval(env: dict[str, str] | None = None) -> float | None:
    """Half of $WATCHDOG_USEC in seconds, when the watchdog is meant for this process."""
    e = env if env is not None else os.environ
    try:
        usec = int(e.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = e.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 2e6


class Watchdog:
    """Ping WATCHDOG=1 every half period while `alive()` says yes.

    When `alive()` turns false the pings stop, so systemd restarts a daemon whose API or
    scheduler died even though the process itself still exists."""

    def __init__(self, alive: Callable[[], bool], interval: float) -> None:
        self.alive = alive
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sd-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                healthy = self.alive()
            except Exception as exc:
                log.warning("liveness check failed: %s", exc)
                healthy = False
            if healthy:
                notify("WATCHDOG=1")
            else:
                log.error("the API or the scheduler is not alive; withholding the watchdog "
                          "ping so the service manager restarts memoryd")
            self._stop.wait(self.interval)


def api_answers(socket_path: Path, timeout: float = 5.0) -> bool:
    """Whether the API answers /health on its Unix socket right now."""
    from daemon.cli.client import socket_request

    try:
        return socket_request(socket_path, "GET", "/health", timeout=timeout).status_code == 200
    except DaemonUnavailable:
        return False


class Supervision:
    """The daemon's side of a Type=notify service: READY=1 once the API answers, then
    watchdog pings while the API answers and the scheduler runs, STOPPING=1 at the end."""

    def __init__(self, socket_path: Path, scheduler: Any) -> None:
        self.socket_path = socket_path
        self.scheduler = scheduler
        self.watchdog: Watchdog | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._announce, name="sd-notify", daemon=True)

    def alive(self) -> bool:
        thread = getattr(self.scheduler, "_thread", None)
        scheduler_ok = bool(self.scheduler.running) and (thread is None or thread.is_alive())
        return scheduler_ok and api_answers(self.socket_path)

    def start(self) -> Supervision:
        if os.environ.get("NOTIFY_SOCKET"):
            self._thread.start()
        return self

    def _announce(self) -> None:
        while not self._stop.is_set():
            if api_answers(self.socket_path, timeout=2.0):
                break
            self._stop.wait(0.1)
        else:
            return
        notify(f"READY=1\nSTATUS=serving on {self.socket_path}\nMAINPID={os.getpid()}")
        interval = watchdog_interval()
        if interval:
            self.watchdog = Watchdog(self.alive, interval)
            self.watchdog.start()

    def stop(self) -> None:
        self._stop.set()
        if self.watchdog:
            self.watchdog.stop()
        notify("STOPPING=1")
