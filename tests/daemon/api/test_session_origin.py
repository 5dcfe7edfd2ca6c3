"""The status page's session cookie acts only for the status page. SameSite=Strict does not
separate ports, so a page on another 127.0.0.1 port gets the cookie attached to what it
sends; in a real headless Chromium such a page tries to pause collection, approve a
pending irreversible request and push memory, and the daemon refuses every one (403),
while the status page's own buttons keep working."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import run_cli
from tests.daemon.approvals.test_approvals import Call, body, pending
from tests.daemon.chromium import Chromium, chromium_path
from tests.daemon.upstream_fixtures import model_entry

ATTACKS = ("/v1/pause?minutes=10080", "/v1/approvals/{aid}/approve", "/v1/sync/push?force=true")
PAGE = """<!doctype html><title>cat pictures</title><body>
<form id="f" method="post" action="{base}/v1/pause?minutes=10080" target="sink"></form>
<iframe name="sink"></iframe>
<script>
(async () => {{
  const out = [];
  for (const path of {paths}) {{
    try {{
      await fetch("{base}" + path, {{method: "POST", mode: "no-cors", credentials: "include"}});
      out.push("sent");
    }} catch (e) {{ out.push(String(e)); }}
  }}
  document.getElementById("f").submit();
  await new Promise(r => setTimeout(r, 1500));
  document.body.dataset.done = JSON.stringify(out);
}})();
</script></body>"""


def serve_page(html: str) -> tuple[ThreadingHTTPServer, int]:
    """A foreign page on another 127.0.0.1 port, as any local program could serve."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def answers(browser: Chromium, fragment: str) -> list[int]:
    """The HTTP statuses Chromium saw for requests whose URL contains `fragment`."""
    return [e["params"]["response"]["status"] for e in browser.events
            if e.get("method") == "Network.responseReceived"
            and fragment in e["params"]["response"]["url"]]


@pytest.mark.skipif(chromium_path() is None,
                    reason="Debian's chromium is not installed (tests/apt-packages.txt)")
def test_a_page_on_another_port_cannot_act_with_the_session(tmp_path: Path, make_config,
                                                             start_daemon, upstreams) -> None:
    good = upstreams("good")
    share = tmp_path / "share"
    share.mkdir()
    config = make_config([], pipeline={"summarize": False}, router={
        "models": [model_entry(good)], "routes": {"default": ["good"]},
        "health_interval_seconds": 0}, approvals={"tasks": ["deploy"]},
        sync={"targets": [{"name": "share", "url": f"dir://{share}"}]})
    d = start_daemon(config)
    base = f"http://127.0.0.1:{d.port}"
    call = Call(d, body("ship build 1432 to production", task="deploy"))
    [waiting] = pending(d)
    paths = [p.format(aid=waiting["id"]) for p in ATTACKS]
    server, foreign = serve_page(PAGE.format(base=base, paths=paths))
    browser = Chromium(tmp_path / "profile")
    try:
        browser.goto(run_cli(config, "open", "--print-url").stdout.strip())
        browser.wait_for("document.body && document.body.dataset.loaded === 'yes'")
        [session] = [c["value"] for c in browser.call("Network.getCookies", session=True,
                                                      urls=[base])["cookies"]
                     if c["name"] == "memoryd_session"]

        browser.goto(f"http://127.0.0.1:{foreign}/")
        sent = browser.wait_for("document.body && document.body.dataset.done", timeout=60)
        assert "sent" in sent  # the browser did send them, cookie and all
        time.sleep(1.0)
        for path in ("/v1/pause", f"/v1/approvals/{waiting['id']}/approve", "/v1/sync/push"):
            seen = answers(browser, path)
            assert seen and set(seen) == {403}, (path, seen)
        with d.unix() as u:
            assert not u.get("/v1/status", headers=d.auth()).json()["paused"]
            assert u.get(f"/v1/approvals/{waiting['id']}",
                         headers=d.auth()).json()["status"] == "pending"
        assert not list(share.iterdir())  # nothing was pushed

        # other clients holding the cookie: a foreign or missing origin is refused too
        with httpx.Client(base_url=base, cookies={"memoryd_session": session}) as c:
            own = {"Origin": base, "Sec-Fetch-Site": "same-origin"}
            for headers in ({}, {"Origin": f"http://127.0.0.1:{foreign}"},
                            {"Origin": "null"}, {"Sec-Fetch-Site": "same-site"},
                            {"Origin": base, "Sec-Fetch-Site": "cross-site"},
                            {"Origin": f"http://localhost:{d.port}"}):
                r = c.post("/v1/resume", headers=headers)
                assert r.status_code == 403, (headers, r.status_code)
                assert r.json()["error"]["type"] == "foreign_origin"
            assert c.get("/v1/status").status_code == 200  # reads: the page's own GETs
            assert c.post("/v1/resume", headers=own).status_code == 200

        # the status page's own buttons still work
        browser.goto(base + "/ui")
        browser.wait_for("document.body && document.body.dataset.loaded === 'yes'")
        sel = f"#approvals [data-id=\"{waiting['id']}\"]"
        browser.wait_for(f"document.querySelector('{sel}')?.innerText")
        browser.js(f"document.querySelector('{sel} button[data-verdict=approve]').click()")
        r = call.result()
        assert r.status_code == 200 and r.json()["memoryd"]["approval"]["by"] == "status page"
        browser.js("document.getElementById('pause-btn').click()")
        browser.wait_for("document.body.dataset.health === 'paused'")
        with d.unix() as u:
            assert u.get("/v1/status", headers=d.auth()).json()["paused"]
    finally:
        browser.close()
        server.shutdown()
