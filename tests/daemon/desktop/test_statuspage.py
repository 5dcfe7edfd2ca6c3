"""The status page, in a real headless Chromium against a real daemon: `memoryd open`'s
one-time link logs the browser in and leaves a clean URL, every section renders (or says
"not available yet" where its route is missing), search works, a screenshot is taken."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import httpx
import pytest

from daemon.api.sessions import SessionStore
from tests.conftest import run_cli
from tests.daemon.chromium import Chromium, chromium_path

SCREENSHOTS = Path(__file__).resolve().parents[3] / "bench" / "screenshots"
SECTIONS = {"overview": "/v1/status", "sources": "/v1/ui/sources",
            "digest": "/v1/memory/digest?period=day", "recent": "/v1/memory/recent?limit=20",
            "sync": "/v1/sync/status", "telemetry": "/v1/telemetry/summary"}


def test_a_login_code_works_once_and_expires() -> None:
    now = [0.0]
    store = SessionStore(clock=lambda: now[0])
    code = store.new_login_code()
    session = store.redeem(code)
    assert session and store.valid(session)
    assert store.redeem(code) is None  # single use
    late = store.new_login_code()
    now[0] += 61
    assert store.redeem(late) is None  # short-lived
    assert store.valid(session)
    store.end(session)
    assert not store.valid(session)
    assert not store.valid(None) and not store.valid("forged")


def test_the_page_needs_a_credential_and_loads_nothing_from_elsewhere(make_config, start_daemon,
                                                                      tmp_path: Path) -> None:
    d = start_daemon(make_config([], pipeline={"summarize": False}))
    with d.tcp() as c:
        assert c.get("/ui").status_code == 401
        assert c.get("/ui/login", params={"code": "made-up"}).status_code == 401
        assert c.post("/v1/ui/login-code").status_code == 401
        r = c.get("/ui", headers=d.auth())  # tools may fetch it with the bearer token
    assert r.status_code == 200 and "<title>memoryd</title>" in r.text
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert r.headers["cache-control"] == "no-store"
    # no external asset: nothing is loaded from a URL with a scheme or a host
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", r.text)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", r.text)
    assert "@import" not in r.text


@pytest.mark.skipif(chromium_path() is None,
                    reason="Debian's chromium is not installed (tests/apt-packages.txt)")
def test_the_status_page_in_a_real_browser(make_config, start_daemon, tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    config = make_config([root], pipeline={"summarize": False})
    d = start_daemon(config)
    (root / "heron.md").write_text("Release plan: the heron migration moves billing to "
                                   "Postgres 16 on the 14th; Ana owns the rollback.\n")
    with d.unix() as u:  # wait until the note is searchable through the API
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            r = u.get("/v1/memory/search", params={"q": "heron migration billing"},
                      headers=d.auth())  # a 503 while the worker starts: ask again
            hits = r.json().get("results", []) if r.status_code == 200 else []
            if any("heron.md" in h["title"] or "heron" in h["text"] for h in hits):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"the note never became searchable (last answer {r.status_code}"
                                 f" {r.text[:300]}):\n{d.log.read_text()}")
        expected = {name: u.get(path, headers=d.auth()).status_code
                    for name, path in SECTIONS.items()}

    url = run_cli(config, "open", "--print-url").stdout.strip()
    base = f"http://127.0.0.1:{d.port}"
    assert url.startswith(base + "/ui/login?code=")
    browser = Chromium(tmp_path / "profile")
    try:
        browser.goto(url)
        browser.wait_for("document.body && document.body.dataset.loaded === 'yes'")
        # the one-time code is gone from the address bar, and so is any token
        assert browser.js("location.href") == base + "/ui"
        cookies = browser.call("Network.getCookies", session=True, urls=[base])["cookies"]
        session = [c for c in cookies if c["name"] == "memoryd_session"]
        assert session and session[0]["httpOnly"] and session[0]["sameSite"] == "Strict"
        assert browser.js("document.cookie") == ""  # HttpOnly: scripts cannot read it
        with d.tcp() as c:
            assert c.get(url).status_code == 401  # the link worked once, never again
            assert c.get("/v1/status", cookies={"memoryd_session": session[0]["value"]}
                         ).status_code == 200  # the API's auth accepts the session

        states = browser.js("Object.fromEntries([...document.querySelectorAll('main section')]"
                            ".map(s => [s.id, s.dataset.state || '']))")
        for name, status in expected.items():
            want = "ok" if status == 200 else "unavailable"
            assert states[name] == want, (name, status, states)
        assert browser.js("document.body.dataset.health") == "ok"
        sources = browser.js("document.querySelector('#sources').innerText")
        assert str(root) in sources
        for name, status in expected.items():
            if status == 404:  # a route another part has not shipped yet
                text = browser.js(f"document.querySelector('#{name} .body').innerText")
                assert "not available yet" in text

        # search, as a user does it: type into the box and press the button
        browser.js("document.getElementById('search-input').focus()")
        browser.call("Input.insertText", session=True, text="heron migration billing")
        browser.js("document.querySelector('#search-form button').click()")
        browser.wait_for("document.getElementById('search-results').dataset.state === 'done'")
        results = browser.js("document.getElementById('search-results').innerText")
        assert "heron" in results and "Postgres 16" in results, results

        shot = browser.screenshot(tmp_path / "statuspage.png")
        assert shot.stat().st_size > 10_000
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, SCREENSHOTS / "statuspage.png")

        # a route that is missing (404) or failing (500) leaves its section saying so,
        # and the rest of the page renders as before
        browser.fail_routes({"/v1/sync/status": 404, "/v1/telemetry/summary": 500})
        browser.call("Page.reload", session=True)
        browser.wait_for("document.body && document.body.dataset.loaded === 'yes'")
        for name in ("sync", "telemetry"):
            assert browser.js(f"document.querySelector('#{name}').dataset.state") == "unavailable"
            text = browser.js(f"document.querySelector('#{name} .body').innerText")
            assert text.startswith("not available yet"), text
        assert "failing on purpose" in browser.js("document.querySelector('#telemetry').innerText")
        assert browser.js("document.querySelector('#overview').dataset.state") == "ok"
        assert browser.js("document.body.dataset.health") == "ok"
        browser.fail_routes({})

        # pausing from the page really pauses the daemon
        browser.js("document.getElementById('pause-btn').click()")
        browser.wait_for("document.body.dataset.health === 'paused'")
        with d.unix() as u:
            assert u.get("/v1/status", headers=d.auth()).json()["paused"]
    finally:
        browser.close()
    # logging out ends the session for the API too
    with httpx.Client(base_url=base) as c:
        c.cookies.set("memoryd_session", session[0]["value"])
        assert c.post("/ui/logout").status_code == 204
        c.cookies.set("memoryd_session", session[0]["value"])
        assert c.get("/v1/status").status_code == 401
