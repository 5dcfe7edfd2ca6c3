"""The read-path routes on a running daemon (real uvicorn, real worker, real store):
each needs the token, bad input is a clear 400, and the CLI twins work through it."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.conftest import run_cli


def _wait_searchable(d, query: str, needle: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    with d.unix() as u:
        while time.monotonic() < deadline:
            r = u.get("/v1/memory/search", params={"q": query, "k": 5}, headers=d.auth())
            if any(needle in h["text"] for h in r.json()["results"]):
                return
            time.sleep(1.0)
    raise AssertionError(f"{needle!r} never became searchable:\n{d.log.read_text()}")


def test_read_path_routes_guard_validate_and_answer(make_config, start_daemon,
                                                    tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    (root / "tunnel.md").write_text("The sync tunnel now uses ServerAliveInterval=30.\n")
    (root / "bank.md").write_text("Account at qqvaultbank, number 0042.\n")
    config = make_config([root], pipeline={"summarize": False})
    d = start_daemon(config)
    _wait_searchable(d, "qqvaultbank account", "qqvaultbank")
    _wait_searchable(d, "ssh keepalive tunnel", "ServerAliveInterval")
    routes = [("GET", "/v1/memory/context", {"query": "tunnel"}),
              ("GET", "/v1/memory/digest", {}), ("GET", "/v1/memory/recent", {}),
              ("GET", "/v1/memory/timeline", {"since": "2020-01-01"}),
              ("POST", "/v1/memory/forget", None)]
    with d.unix() as u:
        for method, path, params in routes:  # no token, no answer
            r = u.request(method, path, params=params, json={"query": "x"})
            assert r.status_code == 401, (path, r.text)
        bad = [
            ("GET", "/v1/memory/context", {"query": "tunnel", "budget_tokens": "lots"},
             "budget_tokens must be a whole number"),
            ("GET", "/v1/memory/context", {"query": "tunnel", "budget_tokens": "10"},
             "budget_tokens must be between"),
            ("GET", "/v1/memory/context", {"query": "  "}, "query is empty"),
            ("GET", "/v1/memory/digest", {"period": "month"}, "period must be"),
            ("GET", "/v1/memory/digest", {"date": "03/04/2026"}, "YYYY-MM-DD"),
            ("GET", "/v1/memory/timeline", {"since": "last tuesdayish"}, "ISO 8601"),
            ("GET", "/v1/memory/recent", {"limit": "0"}, "limit must be"),
        ]
        for method, path, params, message in bad:
            r = u.request(method, path, params=params, headers=d.auth())
            assert r.status_code == 400 and message in r.json()["error"]["message"], r.text
        for body, message in [({}, "say what to forget"), ({"qery": "x"}, "unknown keys"),
                              ([1], "JSON object"), ({"query": "x", "dry_run": "yes"},
                                                     "dry_run must be"),
                              ({"since": "yesterday-ish"}, "ISO 8601")]:
            r = u.post("/v1/memory/forget", json=body, headers=d.auth())
            assert r.status_code == 400 and message in r.json()["error"]["message"], r.text

        # an inverted range is empty (schema-valid, so not an error); no range: the last day
        inverted = {"since": "2026-03-05", "until": "2026-03-04"}
        for path, params in [("/v1/memory/timeline", inverted),
                             ("/v1/memory/search", {**inverted, "q": "tunnel"})]:
            r = u.get(path, params=params, headers=d.auth())
            assert r.status_code == 200 and r.json()["results"] == [], r.text
        r = u.get("/v1/memory/timeline", headers=d.auth())
        assert r.status_code == 200 and {Path(h["title"]).name for h in r.json()["results"]} \
            >= {"tunnel.md"}, r.text

        pack = u.get("/v1/memory/context", params={"query": "ssh keepalive", "budget_tokens": 300},
                     headers=d.auth()).json()
        assert pack["tokens"] <= 300 and "ServerAliveInterval" in pack["markdown"]
        recent = u.get("/v1/memory/recent", headers=d.auth()).json()["results"]
        assert {Path(h["title"]).name for h in recent} >= {"tunnel.md", "bank.md"}
        tl = u.get("/v1/memory/timeline", params={"since": "2000-01-01T00:00:00Z"},
                   headers=d.auth()).json()["results"]
        assert [h["ts"] for h in tl] == sorted(h["ts"] for h in tl) and len(tl) == 2
        assert u.get("/v1/memory/digest", headers=d.auth()).json()["period"] == "day"

    # the CLI twins go through the daemon
    out = run_cli(config, "context", "ssh", "keepalive", "--budget", "300").stdout
    assert "ServerAliveInterval" in out and "UTC" in out
    assert "would forget 1 events" in run_cli(config, "forget", "--query", "QQVAULTBANK").stdout
    assert "forgot 1 events" in run_cli(config, "forget", "--query", "qqvaultbank",
                                        "--yes").stdout
    with d.unix() as u:
        r = u.get("/v1/memory/search", params={"q": "qqvaultbank account", "k": 5},
                  headers=d.auth())
        assert all("qqvaultbank" not in h["text"] for h in r.json()["results"])
        assert u.get("/v1/status", headers=d.auth()).json()["journal"]["total"] == 1
    bad = run_cli(config, "digest", "--date", "tomorrow", check=False)
    assert bad.returncode == 2 and "YYYY-MM-DD" in bad.stderr
    digest = json.loads(run_cli(config, "digest", "--week", "--json").stdout)
    assert digest["period"] == "week"
