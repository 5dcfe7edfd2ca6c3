"""Real browser history for the browser collector's tests, made by real browsers.

- `PageServer`: a loopback HTTP server (127.0.0.1 only) with a few titled pages and a
  302 redirect.
- `Chromium`: headless Chromium driven over `--remote-debugging-pipe` (the DevTools
  protocol as NUL-framed JSON on fds 3/4: no TCP port, no websocket library). It quits
  with `Browser.close`; a SIGTERM in the first ~10 s loses visits not yet committed.
- `Firefox`: headless Firefox ESR driven over Marionette (loopback TCP, `len:json`
  frames), with prefs that keep it on loopback; quits with `Marionette:Quit`.
- `build_safari_history`: Safari cannot run on Linux, so its `History.db` is *built*
  here from Safari's published schema, not written by Safari.
- `site` and `chromium_run`: module-scoped pytest fixtures, a page server and one
  finished Chromium session (tests that change its History work on a copy).

Both browsers get a fresh profile and their own HOME inside the test's tmp dir, and every
host name but 127.0.0.1/localhost fails to resolve, so nothing leaves the machine.
Only the standard library (and pytest for the fixtures).
"""

from __future__ import annotations

import http.server
import json
import os
import select
import shutil
import socket
import socketserver
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest

PAGES = {
    "/": "Index of the heron field notes",
    "/alpha.html": "Alpha page – the ocelot rollout",
    "/beta.html": "Beta page with ünïcode",
    "/gamma.html": "Gamma page three",
    "/delta.html": "Delta page after the restart",
    "/epsilon.html": "Epsilon page after the restart",
}
REDIRECTS = {"/moved": "/gamma.html"}  # a 302 hop: one user visit, two history rows


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        title = PAGES.get(path)
        if title is None:  # a redirect, or nothing here
            self.send_response(302 if path in REDIRECTS else 404)
            if path in REDIRECTS:
                self.send_header("Location", REDIRECTS[path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        links = "".join(f'<li><a href="{p}">{t}</a></li>' for p, t in PAGES.items())
        body = (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
                f"</head><body><h1>{title}</h1><ul>{links}</ul></body></html>").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class PageServer:
    """`with PageServer() as site: site.url("/alpha.html")` on 127.0.0.1, a free port."""

    def __enter__(self) -> Self:
        self._srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Handler)
        self._srv.daemon_threads = True
        self.port = self._srv.server_address[1]
        self._thread = threading.Thread(target=self._srv.serve_forever, daemon=True)
        self._thread.start()
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __exit__(self, *exc: object) -> None:
        self._srv.shutdown()
        self._srv.server_close()
        self._thread.join(timeout=5)


def _browser_env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"), "MOZ_CRASHREPORTER_DISABLE": "1",
            "MOZ_HEADLESS": "1"}


def _stop(proc: subprocess.Popen[bytes], timeout: float) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


# -- Chromium -------------------------------------------------------------------------

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1, EXCLUDE localhost",
)


def chromium_binary() -> str | None:
    for cand in (os.environ.get("CHROMIUM", ""), "/usr/lib/chromium/chromium",
                 shutil.which("chromium") or "", shutil.which("chromium-browser") or "",
                 shutil.which("google-chrome") or ""):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


class Chromium:
    """A running headless Chromium with one tab; `navigate`, then `close` (Browser.close)."""

    def __init__(self, user_data_dir: Path, timeout: float = 20.0) -> None:
        self.user_data_dir = user_data_dir
        self.timeout = timeout
        self._buf = b""
        self._id = 0
        self._events: list[dict[str, Any]] = []

    @property
    def history(self) -> Path:
        return self.user_data_dir / "Default" / "History"

    def __enter__(self) -> Self:
        exe = chromium_binary()
        if exe is None:
            raise RuntimeError("chromium not found: apt-get install chromium")
        self.user_data_dir.mkdir(parents=True, exist_ok=True)
        to_r, self._to_w = os.pipe()  # chromium reads commands on fd 3
        self._from_r, from_w = os.pipe()  # and writes replies on fd 4

        def child_fds() -> None:
            a, b = os.dup(to_r), os.dup(from_w)  # dup first: the pipe fds may be 3 or 4
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [exe, *CHROMIUM_FLAGS, "--remote-debugging-pipe",
             f"--user-data-dir={self.user_data_dir}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=child_fds, pass_fds=(3, 4),  # noqa: PLW1509 - fds 3/4 must be exact
            env=_browser_env(self.user_data_dir.parent / "chromium-home"))
        os.close(to_r)
        os.close(from_w)
        try:
            target = self._send("Target.createTarget", {"url": "about:blank"})["targetId"]
            self._session = self._send("Target.attachToTarget",
                                       {"targetId": target, "flatten": True})["sessionId"]
            self._send("Page.enable", session=self._session)
        except BaseException:
            self._kill()
            raise
        return self

    def _recv(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_r], [], [], left)[0]:
                raise TimeoutError("chromium did not answer over the DevTools pipe")
            chunk = os.read(self._from_r, 65536)
            if not chunk:
                raise EOFError("chromium closed the DevTools pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)  # type: ignore[no-any-return]

    def _send(self, method: str, params: dict[str, Any] | None = None,
              session: str | None = None) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._recv(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})  # type: ignore[no-any-return]
            self._events.append(reply)

    def _wait_event(self, method: str) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            for i, ev in enumerate(self._events):
                if ev.get("method") == method and ev.get("sessionId") == self._session:
                    del self._events[i]
                    return
            self._events.append(self._recv(deadline))

    def navigate(self, url: str, transition: str = "link") -> str:
        """Load `url` as if by `transition` ("typed", "link", "reload", ...); return its title."""
        self._events.clear()
        self._send("Page.navigate", {"url": url, "transitionType": transition}, self._session)
        self._wait_event("Page.loadEventFired")
        title = self._send("Runtime.evaluate", {"expression": "document.title",
                                                "returnByValue": True}, self._session)
        return str(title["result"].get("value", ""))

    def close(self) -> int:
        """Quit cleanly (Browser.close), so every visit is committed; return the exit code."""
        if self.proc.poll() is None:
            try:
                self._send("Browser.close")
            except (EOFError, TimeoutError, OSError):
                pass
        rc = _stop(self.proc, 30)
        self._close_pipes()
        return rc

    def _close_pipes(self) -> None:
        for fd in (self._to_w, self._from_r):
            try:
                os.close(fd)
            except OSError:
                pass

    def _kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_pipes()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self._kill()


# -- Firefox --------------------------------------------------------------------------

# Everything Firefox would fetch by itself is off, and anything not on loopback goes to a
# dead proxy on 127.0.0.1:9; marionette.port 0 picks a free port (MarionetteActivePort).
_FIREFOX_OFF = (
    "browser.shell.checkDefaultBrowser", "browser.aboutwelcome.enabled",
    "datareporting.policy.dataSubmissionEnabled", "datareporting.healthreport.uploadEnabled",
    "toolkit.telemetry.enabled", "toolkit.telemetry.unified", "app.update.enabled",
    "app.update.auto", "app.normandy.enabled", "app.shield.optoutstudies.enabled",
    "extensions.update.enabled", "extensions.getAddons.cache.enabled",
    "extensions.blocklist.enabled", "browser.safebrowsing.malware.enabled",
    "browser.safebrowsing.phishing.enabled", "browser.safebrowsing.downloads.enabled",
    "browser.safebrowsing.update.enabled", "browser.newtabpage.enabled",
    "browser.newtabpage.activity-stream.feeds.topsites",
    "browser.newtabpage.activity-stream.feeds.section.topstories", "browser.search.update",
    "browser.search.geoSpecificDefaults", "browser.region.update.enabled", "services.sync.enabled",
    "identity.fxaccounts.enabled", "dom.push.enabled", "dom.push.connection.enabled",
    "network.captive-portal-service.enabled", "network.connectivity-service.enabled",
    "network.prefetch-next", "browser.places.speculativeConnect.enabled",
    "browser.urlbar.speculativeConnect.enabled", "geo.enabled", "media.gmp-gmpopenh264.enabled",
    "browser.ping-centre.telemetry", "security.remote_settings.crlite_filters.enabled",
    "security.remote_settings.intermediates.enabled", "network.proxy.allow_hijacking_localhost",
    "network.dns.use_https_rr_as_altsvc", "network.dns.echconfig.enabled",
)
FIREFOX_PREFS: dict[str, object] = {
    **dict.fromkeys(_FIREFOX_OFF, False),
    "browser.startup.homepage_override.mstone": "ignore", "browser.startup.page": 0,
    "toolkit.telemetry.server": "", "browser.safebrowsing.provider.mozilla.updateURL": "",
    "browser.newtabpage.activity-stream.default.sites": "", "browser.region.network.url": "",
    "services.settings.server": "http://127.0.0.1:9/v1", "network.dns.disablePrefetch": True,
    "network.http.speculative-parallel-limit": 0, "network.trr.mode": 5,
    "media.gmp-manager.url": "", "security.OCSP.enabled": 0, "network.proxy.type": 1,
    "network.proxy.http": "127.0.0.1", "network.proxy.http_port": 9,
    "network.proxy.ssl": "127.0.0.1", "network.proxy.ssl_port": 9,
    "network.proxy.no_proxies_on": "127.0.0.1,localhost", "network.dns.native-is-localhost": True,
    "network.dns.forceResolve": "127.0.0.1", "marionette.port": 0, "places.history.enabled": True,
}


def firefox_binary() -> str | None:
    for cand in (os.environ.get("FIREFOX", ""), shutil.which("firefox-esr") or "",
                 shutil.which("firefox") or ""):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


class Firefox:
    """A running headless Firefox on `profile`; `navigate`, then `quit` (Marionette:Quit)."""

    def __init__(self, profile: Path, timeout: float = 30.0) -> None:
        self.profile = profile
        self.timeout = timeout
        self._buf = b""
        self._id = 0

    @property
    def places(self) -> Path:
        return self.profile / "places.sqlite"

    def __enter__(self) -> Self:
        exe = firefox_binary()
        if exe is None:
            raise RuntimeError("firefox not found: apt-get install firefox-esr")
        self.profile.mkdir(parents=True, exist_ok=True)
        (self.profile / "user.js").write_text("".join(
            f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in FIREFOX_PREFS.items()))
        port_file = self.profile / "MarionetteActivePort"
        port_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [exe, "--headless", "--marionette", "--no-remote", "--profile", str(self.profile)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=_browser_env(self.profile.parent / "firefox-home"))
        try:
            deadline = time.monotonic() + self.timeout
            while not (port_file.exists() and port_file.read_text().strip()):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"firefox did not start (exit {self.proc.poll()})")
                time.sleep(0.05)
            self._sock = socket.create_connection(
                ("127.0.0.1", int(port_file.read_text().strip())), timeout=self.timeout)
            self._recv()  # the hello
            self._cmd("WebDriver:NewSession",
                      {"capabilities": {"alwaysMatch": {"pageLoadStrategy": "normal"}}})
        except BaseException:
            self._kill()
            raise
        return self

    def _recv(self) -> Any:
        while b":" not in self._buf:
            self._buf += self._read()
        size, rest = self._buf.split(b":", 1)
        n = int(size)
        while len(rest) < n:
            rest += self._read()
        self._buf = rest[n:]
        return json.loads(rest[:n])

    def _read(self) -> bytes:
        chunk = self._sock.recv(65536)
        if not chunk:
            raise EOFError("firefox closed the Marionette connection")
        return chunk

    def _cmd(self, name: str, params: dict[str, Any] | None = None) -> Any:
        self._id += 1
        data = json.dumps([0, self._id, name, params or {}]).encode()
        self._sock.sendall(str(len(data)).encode() + b":" + data)
        while True:
            msg = self._recv()
            if msg[0] == 1 and msg[1] == self._id:
                if msg[2]:
                    raise RuntimeError(f"{name}: {msg[2]}")
                return msg[3]

    def navigate(self, url: str) -> str:
        self._cmd("WebDriver:Navigate", {"url": url})
        return str(self._cmd("WebDriver:GetTitle")["value"])

    def quit(self) -> int:
        if self.proc.poll() is None:
            try:
                self._cmd("Marionette:Quit", {"flags": ["eAttemptQuit"]})
            except (OSError, EOFError, ValueError):
                pass  # the connection drops as Firefox goes
        rc = _stop(self.proc, 30)
        self._sock.close()
        return rc

    def _kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        sock = getattr(self, "_sock", None)
        if sock is not None:
            sock.close()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.quit()
        else:
            self._kill()


def write_profiles_ini(firefox_dir: Path, profiles: dict[str, str]) -> Path:
    """Write a Firefox `profiles.ini` listing {name: relative path} under `firefox_dir`."""
    lines = ["[General]", "StartWithLastProfile=1", "Version=2", ""]
    for i, (name, rel) in enumerate(profiles.items()):
        lines += [f"[Profile{i}]", f"Name={name}", "IsRelative=1", f"Path={rel}",
                  *(["Default=1"] if i == 0 else []), ""]
    firefox_dir.mkdir(parents=True, exist_ok=True)
    ini = firefox_dir / "profiles.ini"
    ini.write_text("\n".join(lines))
    return ini


# -- Safari (built, not written by Safari) ----------------------------------------------

# Safari's History.db tables as published by forensic references for Safari 9 to 17
# (history_items holds one row per URL, history_visits one per visit; visit_time is a
# REAL of seconds since 2001-01-01 00:00:00 UTC, the Core Data / NSDate epoch).
SAFARI_SCHEMA = """
CREATE TABLE history_items (id INTEGER PRIMARY KEY AUTOINCREMENT, url TEXT NOT NULL UNIQUE,
  domain_expansion TEXT NULL, visit_count INTEGER NOT NULL, daily_visit_counts BLOB NOT NULL,
  weekly_visit_counts BLOB NULL, autocomplete_triggers BLOB NULL,
  should_recompute_derived_visit_counts INTEGER NOT NULL, visit_count_score INTEGER NOT NULL,
  status_code INTEGER NOT NULL DEFAULT 0);
CREATE TABLE history_visits (id INTEGER PRIMARY KEY AUTOINCREMENT,
  history_item INTEGER NOT NULL REFERENCES history_items(id) ON DELETE CASCADE,
  visit_time REAL NOT NULL, title TEXT NULL, load_successful BOOLEAN NOT NULL DEFAULT 1,
  http_non_get BOOLEAN NOT NULL DEFAULT 0, synthesized BOOLEAN NOT NULL DEFAULT 0,
  redirect_source INTEGER NULL UNIQUE REFERENCES history_visits(id) ON DELETE CASCADE,
  redirect_destination INTEGER NULL UNIQUE REFERENCES history_visits(id) ON DELETE CASCADE,
  origin INTEGER NOT NULL DEFAULT 0, generation INTEGER NOT NULL DEFAULT 0,
  attributes INTEGER NOT NULL DEFAULT 0, score INTEGER NOT NULL DEFAULT 0);
CREATE TABLE history_tombstones (id INTEGER PRIMARY KEY AUTOINCREMENT,
  start_time REAL NOT NULL, end_time REAL NOT NULL, url TEXT, generation INTEGER NOT NULL
  DEFAULT 0);
CREATE TABLE metadata (key TEXT NOT NULL UNIQUE, value);
CREATE INDEX history_item__domain_expansion ON history_items (domain_expansion);
CREATE INDEX history_visits__last_visit ON history_visits (history_item, visit_time DESC,
  synthesized ASC);
CREATE INDEX history_visits__origin ON history_visits (origin, generation);
"""
SAFARI_EPOCH = 978307200  # 2001-01-01T00:00:00Z as Unix seconds


def build_safari_history(path: Path, visits: list[tuple[str, str | None, float]]) -> Path:
    """Build a Safari-schema History.db (WAL, like Safari's) with `visits` as
    (url, title, unix seconds); visits to one URL share a history_items row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.executescript(SAFARI_SCHEMA)
        con.execute("INSERT INTO metadata VALUES ('version', 20)")
        for url, title, unix in visits:
            con.execute("INSERT OR IGNORE INTO history_items (url, domain_expansion, visit_count,"
                        " daily_visit_counts, should_recompute_derived_visit_counts,"
                        " visit_count_score) VALUES (?, NULL, 0, x'', 0, 0)", (url,))
            item = con.execute("SELECT id FROM history_items WHERE url=?", (url,)).fetchone()[0]
            con.execute("UPDATE history_items SET visit_count = visit_count + 1 WHERE id=?",
                        (item,))
            con.execute("INSERT INTO history_visits (history_item, visit_time, title)"
                        " VALUES (?, ?, ?)", (item, unix - SAFARI_EPOCH, title))
        con.commit()
    finally:
        con.close()
    return path


# -- pytest fixtures ---------------------------------------------------------------

needs_chromium = pytest.mark.skipif(chromium_binary() is None,
                                    reason="needs chromium (apt-get install chromium)")
needs_firefox = pytest.mark.skipif(firefox_binary() is None,
                                   reason="needs firefox-esr (apt-get install firefox-esr)")


@pytest.fixture(scope="module", name="site")
def site_fixture() -> Iterator[PageServer]:
    with PageServer() as s:
        yield s


@dataclass
class ChromiumRun:
    user_data_dir: Path
    history: Path
    started: float  # wall clock around the visits
    ended: float


@pytest.fixture(scope="module", name="chromium_run")
def chromium_run_fixture(site: PageServer, tmp_path_factory: pytest.TempPathFactory) -> ChromiumRun:
    """One real Chromium session: alpha typed in the address bar, beta by a link, a link
    through a 302 to gamma, beta reloaded; quit with Browser.close."""
    if chromium_binary() is None:
        pytest.skip("needs chromium (apt-get install chromium)")
    udd = tmp_path_factory.mktemp("chromium") / "user-data"
    with Chromium(udd) as browser:
        started = time.time()
        assert browser.navigate(site.url("/alpha.html"), "typed").startswith("Alpha")
        browser.navigate(site.url("/beta.html"), "link")
        assert browser.navigate(site.url("/moved"), "link") == "Gamma page three"
        browser.navigate(site.url("/beta.html"), "reload")
        ended = time.time()
    return ChromiumRun(udd, udd / "Default" / "History", started, ended)
