"""`memoryd tray`: a tray icon whose colour tells the truth about memory.

Its own process, reading the daemon's status API over the Unix socket: a tray crash
never stops memory, and a daemon restart only turns the icon red until it answers again.

  green   healthy
  amber   degraded: memory works, but something is failing (a collector, the summarizer,
          a sync target down or refused); the tooltip names it
  red     memory unavailable (no daemon, or /v1/status's memory.available is false: the
          store's disk full or read-only, the store unreadable, the embedder failing, the
          worker crash-looping); the tooltip says why, from memory.degraded
  grey    collection paused

Backends, chosen on purpose: pystray's appindicator backend has a real menu, but needs
PyGObject, the AyatanaAppIndicator3 typelib and a D-Bus session; where it cannot run,
the X backend docks into any XEmbed tray but has no menu (HAS_MENU is False), so a
left-click opens the status page, which has the same controls. pystray's stop() has been
seen to hang with a tray host, so quitting never waits on it for longer than
QUIT_SECONDS: the process exits regardless.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from daemon.config import Config
from daemon.desktop.cli import login_url, request
from daemon.errors import DaemonUnavailable, MemorydError

log = logging.getLogger(__name__)
QUIT_SECONDS = 3.0
COLOURS = {"ok": (18, 183, 106), "degraded": (247, 144, 9), "unavailable": (240, 68, 56),
           "paused": (152, 162, 179)}
SYNC_TROUBLE = frozenset({"down", "degraded", "failing", "error"})


@dataclass(frozen=True)
class Health:
    state: str  # one of COLOURS
    line: str  # the status line: what a user reads in the menu and the tooltip
    sync_configured: bool = False
    approvals: int = 0  # requests waiting for the user's approval (daemon/approvals.py)


def judge(status: dict[str, Any] | None, sync: dict[str, Any] | None,
          error: str = "") -> Health:
    """Given /v1/status and /v1/sync/status (None when missing), return the icon's state."""
    targets = (sync or {}).get("targets") or []
    configured = bool(targets)
    if status is None:
        return Health("unavailable", f"memory unavailable: {error or 'no daemon'}", configured)
    if status.get("paused"):
        return Health("paused", "collection paused", configured)
    memory = status.get("memory") or {}
    problems = memory.get("degraded") or []
    why = "; ".join(p.get("message", p.get("code", "?")) for p in problems)
    if memory.get("available") is False:
        why = why or (status.get("engine") or {}).get("error", "the engine reports an error")
        return Health("unavailable", f"memory unavailable: {why}", configured)
    down = [t.get("name", "?") for t in targets if t.get("state") in SYNC_TROUBLE]
    if down and not any(p.get("code") == "sync_target_down" for p in problems):
        why = "; ".join([why] * bool(why) + [f"sync failing: {', '.join(down)}"])
    if why:
        return Health("degraded", f"memory degraded: {why}", configured)
    events = (status.get("journal") or {}).get("total", 0)
    return Health("ok", f"healthy: {events} events remembered", configured)


class DaemonLink:
    """What the tray does, over the daemon's API: no GUI here, so it is tested directly."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.health = Health("unavailable", "memory unavailable: not checked yet")

    def _json(self, method: str, path: str) -> dict[str, Any] | None:
        resp = request(self.cfg, method, path, timeout=10)
        if resp.status_code in (404, 405):
            return None
        if resp.status_code >= 400:
            message = resp.json().get("error", {}).get("message", resp.text)
            raise MemorydError(message)
        return dict(resp.json())

    def check(self) -> Health:
        try:
            status = self._json("GET", "/v1/status")
            try:
                sync = self._json("GET", "/v1/sync/status")
            except MemorydError:
                sync = {"targets": [{"name": "sync", "state": "error"}]}
            self.health = judge(status, sync)
            waiting = self._json("GET", "/v1/approvals?status=pending&limit=1") or {}
            if waiting.get("pending"):
                n = int(waiting["pending"])
                self.health = replace(self.health, approvals=n, line=(
                    f"{self.health.line}; {n} request{'s' if n > 1 else ''} waiting for "
                    "your approval"))
        except (DaemonUnavailable, MemorydError, ValueError) as exc:
            self.health = judge(None, None, str(exc))
        return self.health

    def pause(self) -> str:
        self._json("POST", "/v1/pause")
        self.check()
        return "collection paused"

    def resume(self) -> str:
        self._json("POST", "/v1/resume")
        self.check()
        return "collection resumed"

    def toggle_pause(self) -> str:
        return self.resume() if self.health.state == "paused" else self.pause()

    def sync_now(self) -> str:
        sync = self._json("GET", "/v1/sync/status")
        if not sync or not sync.get("targets"):
            return "sync not configured"
        done = []
        for op in ("push", "pull"):
            try:
                self._json("POST", f"/v1/sync/{op}")
                done.append(op)
            except MemorydError as exc:
                done.append(f"{op} failed: {exc}")
        self.check()
        return "sync: " + ", ".join(done)

    def open_page(self, opener: Callable[[str], bool] = webbrowser.open) -> str:
        url = login_url(self.cfg)
        if not opener(url):
            return "no browser found; run `memoryd open`"
        return "status page opened"


def icon_image(state: str, size: int = 64) -> Any:
    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    pad = size // 8
    draw.ellipse((pad, pad, size - pad, size - pad), fill=COLOURS[state] + (255,),
                 outline=(255, 255, 255, 255), width=max(2, size // 16))
    if state == "paused":  # two bars, so the state reads without colour too
        w, h = size // 10, size // 3
        for x in (size // 2 - 2 * w, size // 2 + w):
            draw.rectangle((x, size // 2 - h // 2, x + w, size // 2 + h // 2), fill="white")
    return img


def choose_backend(wanted: str = "auto") -> str:
    """Return the pystray backend to use: appindicator where it can run (a menu),
    else xorg (left-click only). Raise DaemonUnavailable-free MemorydError if none can."""
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        raise MemorydError("no display: the tray needs a graphical session (DISPLAY is unset)")
    if wanted != "auto":
        return wanted
    if os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        try:
            import gi

            gi.require_version("Gtk", "3.0")
            gi.require_version("AyatanaAppIndicator3", "0.1")
            from gi.repository import AyatanaAppIndicator3, Gtk  # noqa: F401

            return "appindicator"
        except (ImportError, ValueError) as exc:
            log.info("no appindicator backend (%s); the tray has no menu, left-click "
                     "opens the status page", exc)
    return "xorg"


def load_pystray(backend: str) -> Any:
    os.environ["PYSTRAY_BACKEND"] = backend
    try:
        import pystray
    except Exception as exc:  # Xlib.error.DisplayNameError is not an ImportError
        raise MemorydError(f"the tray cannot start with the {backend} backend: "
                           f"{type(exc).__name__}: {exc}") from exc
    return pystray


class Tray:
    def __init__(self, cfg: Config, backend: str, poll_seconds: float = 5.0) -> None:
        self.link = DaemonLink(cfg)
        self.backend = backend
        self.poll_seconds = poll_seconds
        self.pystray = load_pystray(backend)
        self.has_menu = bool(getattr(self.pystray.Icon, "HAS_MENU", False))
        self._quit = threading.Event()
        self._shown = ""
        health = self.link.check()
        self.icon = self.pystray.Icon("memoryd", icon_image(health.state),
                                      title=f"memoryd: {health.line}", menu=self._menu())
        self._xorg: _XorgUpdates | None = None
        if backend == "xorg":
            _listen_for_clicks(self.icon)
            self._xorg = _XorgUpdates(self.icon)

    def _menu(self) -> Any:
        item, menu = self.pystray.MenuItem, self.pystray.Menu
        if not self.has_menu:
            # No menu exists here: a left-click runs the default item.
            return menu(item("Open status page", self._act(self.link.open_page),
                             default=True))
        return menu(
            item(lambda _: self.link.health.line, None, enabled=False),
            menu.SEPARATOR,
            item(lambda _: "Resume collection" if self.link.health.state == "paused"
                 else "Pause collection", self._act(self.link.toggle_pause)),
            item("Sync now", self._act(self.link.sync_now)),
            item(lambda _: f"Approvals waiting: {self.link.health.approvals}…",
                 self._act(self.link.open_page), enabled=lambda _: self.link.health.approvals > 0),
            item("Open status page", self._act(self.link.open_page), default=True),
            menu.SEPARATOR,
            item("Quit tray", lambda *_: self.quit()),
        )

    def _act(self, fn: Callable[[], str]) -> Callable[..., None]:
        last = [0.0]

        def run(*_: Any) -> None:
            if time.monotonic() - last[0] < 1.0:
                return  # one click can arrive twice; never open two pages for it
            last[0] = time.monotonic()
            try:
                said = fn()
            except (DaemonUnavailable, MemorydError, ValueError) as exc:
                said = f"failed: {exc}"
            log.info("tray: %s", said)
            self._show(self.link.health)
            if said.startswith(("sync", "failed", "no browser")) and \
                    getattr(self.pystray.Icon, "HAS_NOTIFICATION", False):
                try:
                    self.icon.notify(said, "memoryd")
                except Exception:
                    pass

        return run

    def _show(self, health: Health) -> None:
        key = f"{health.state}|{health.line}"
        if key == self._shown:
            return
        self._shown = key
        image, title = icon_image(health.state), f"memoryd: {health.line}"
        if self._xorg is not None and threading.current_thread() is not getattr(
                self.icon, "_thread", None):
            self._xorg.apply(image, title)
        else:
            self.icon.icon = image
            self.icon.title = title
        if self.has_menu:
            self.icon.update_menu()
        log.info("tray: %s", health.line)

    def _poll(self) -> None:
        while not self._quit.wait(self.poll_seconds):
            self._show(self.link.check())

    def _setup(self, icon: Any) -> None:
        icon.visible = True
        self._show(self.link.health)
        threading.Thread(target=self._poll, name="tray-poll", daemon=True).start()

    def quit(self) -> None:
        """Stop the icon, and end the process within QUIT_SECONDS whatever pystray does."""
        if self._quit.is_set():
            return
        self._quit.set()
        timer = threading.Timer(QUIT_SECONDS, lambda: os._exit(0))
        timer.daemon = True
        timer.start()
        threading.Thread(target=self.icon.stop, name="tray-stop", daemon=True).start()

    def run(self) -> int:
        import faulthandler

        # `kill -USR1 <pid>` prints every thread's stack to the log: what a stuck tray waits on
        faulthandler.register(signal.SIGUSR1, all_threads=True)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.quit())
        log.info("tray running with the %s backend (%s)", self.backend,
                 "menu" if self.has_menu else "no menu: left-click opens the status page")
        try:
            self.icon.run(setup=self._setup)
        except Exception as exc:
            if not self._quit.is_set():
                raise
            # pystray's clean-up can fail on the way out (e.g. hiding a notification
            # with no notification service); the user asked to quit, so quit.
            log.debug("pystray failed while stopping: %s", exc)
        self._quit.set()
        return 0


def _listen_for_clicks(icon: Any) -> None:
    """pystray 0.19.5's X backend handles ButtonPress but never asks the X server for it
    (its window selects only Exposure and StructureNotify), so a click never arrives.
    Ask for it too, before the icon's event loop starts."""
    import Xlib.X

    icon._window.change_attributes(event_mask=Xlib.X.ExposureMask | Xlib.X.StructureNotifyMask
                                   | Xlib.X.ButtonPressMask)
    icon._display.flush()


class _XorgUpdates:
    """Changes the X backend's icon and title from another thread without sharing its
    X connection.

    pystray's X backend applies a change made from another thread by sending a message
    over its one connection and waiting for its event loop; with python-xlib that was
    seen to deadlock (the loop waiting for a reply inside an Expose redraw while the
    poller held the connection), or the change got lost. Here the poller sets the new
    values and sends the very same wake-up message over a connection of its own, so the
    event loop alone ever touches its connection."""

    def __init__(self, icon: Any) -> None:
        self.icon = icon
        self._display: Any = None
        self._lock = threading.Lock()

    def apply(self, image: Any, title: str) -> None:
        import queue

        import Xlib.display
        import Xlib.error
        import Xlib.protocol.event
        import Xlib.X

        with self._lock:
            self.icon._icon = image
            self.icon._icon_valid = False
            self.icon._title = title
            try:
                if self._display is None:
                    self._display = Xlib.display.Display()
                d = self._display
                win = d.create_resource_object("window", self.icon._window.id)
                for name in ("_PYSTRAY__UPDATE_ICON", "_PYSTRAY__UPDATE_TITLE"):
                    msg = Xlib.protocol.event.ClientMessage(
                        window=win, client_type=d.intern_atom(name),
                        data=(32, (Xlib.X.CurrentTime, 0, 0, 0, 0)))
                    win.send_event(msg, event_mask=Xlib.X.NoEventMask)
                d.flush()
            except (Xlib.error.XError, OSError) as exc:
                log.warning("could not update the tray icon: %s", exc)
                self._display = None
                return
            for _ in range(2):  # the event loop reports each update done (or failed)
                try:
                    done = self.icon._queue.get(timeout=5)
                except queue.Empty:
                    log.warning("the tray's event loop did not apply an update in 5 s")
                    return
                if done is not True:
                    log.warning("the tray's event loop failed an update: %s", done[1])


def run_tray(cfg: Config, backend: str = "auto", poll_seconds: float = 5.0) -> int:
    tray = Tray(cfg, choose_backend(backend), poll_seconds)
    started = time.monotonic()
    code = tray.run()
    log.info("tray stopped after %.0f s", time.monotonic() - started)
    return code
