"""A minimal driver for Debian's headless Chromium over the DevTools protocol, spoken on
a pipe (--remote-debugging-pipe: NUL-separated JSON on fds 3 and 4), so no WebDriver and
no websocket library is needed. Chromium is told to look nothing up on the network:
every host but 127.0.0.1 resolves to nothing, and its background services are off."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--no-default-browser-check", "--disable-background-networking", "--disable-sync",
    "--disable-component-update", "--disable-default-apps", "--disable-extensions",
    "--disable-domain-reliability", "--disable-client-side-phishing-detection",
    "--disable-breakpad", "--metrics-recording-only", "--no-pings", "--no-proxy-server",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication,"
    "CertificateTransparencyComponentUpdater,InterestFeedContentSuggestions",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--window-size=1280,1600", "--hide-scrollbars", "--remote-debugging-pipe",
]
AUTO_IDS = 1_000_000


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Chromium:
    def __init__(self, profile: Path) -> None:
        exe = chromium_path()
        assert exe, "chromium is not installed (tests/apt-packages.txt lists it)"
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def fds() -> None:  # in the child: the pipe ends become fds 3 and 4
            a, b = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(a, 3)
            os.dup2(b, 4)  # inheritable; every other fd of ours is close-on-exec

        self.log = open(profile.parent / "chromium.log", "wb")
        self.proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     preexec_fn=fds, close_fds=False,
                                     stdout=self.log, stderr=self.log)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._id = 0
        self._auto = AUTO_IDS  # ids of replies sent from inside the read loop
        self._failing: dict[str, int] = {}
        self.events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Network"):
            self.call(f"{domain}.enable", session=True)

    def _read(self, timeout: float) -> dict[str, Any]:
        import select

        deadline = time.monotonic() + timeout
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_child], [], [], left)[0]:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._from_child, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, session: bool = False, timeout: float = 30,
             **params: Any) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read(timeout)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))
            if reply.get("method") == "Fetch.requestPaused":
                self._answer_paused(reply["params"])
            elif reply.get("id", 0) < AUTO_IDS:
                self.events.append(reply)

    def fail_routes(self, routes: dict[str, int]) -> None:
        """Answer requests whose URL contains a key with that HTTP status (a route that
        is missing, 404, or broken, 500), and let every other request through."""
        self._failing = routes
        self.call("Fetch.enable", session=True, patterns=[{"urlPattern": "*"}])

    def _answer_paused(self, p: dict[str, Any]) -> None:
        self._auto += 1
        status = next((s for k, s in self._failing.items() if k in p["request"]["url"]), None)
        if status is None:
            msg = {"id": self._auto, "method": "Fetch.continueRequest",
                   "params": {"requestId": p["requestId"]}}
        else:
            body = base64.b64encode(json.dumps({"error": {"type": "test",
                                                          "message": "failing on purpose"}}
                                               ).encode()).decode()
            msg = {"id": self._auto, "method": "Fetch.fulfillRequest",
                   "params": {"requestId": p["requestId"], "responseCode": status,
                              "responseHeaders": [{"name": "Content-Type",
                                                   "value": "application/json"}],
                              "body": body}}
        msg["sessionId"] = self.session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")

    def js(self, expression: str) -> Any:
        r = self.call("Runtime.evaluate", session=True, expression=expression,
                      returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def goto(self, url: str) -> None:
        self.call("Page.navigate", session=True, url=url)

    def wait_for(self, expression: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = self.js(expression)
            except RuntimeError:
                value = None  # the page is between documents
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression}")

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", session=True, format="png",
                         captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_child, self._from_child):
            os.close(fd)
        self.log.close()
