"""Human approval on a real daemon: requests that wait until the user approves or denies
them from the CLI (or the status page), a timeout that denies, and captured memory that
goes to a remote model only once the user says yes. The upstreams are real HTTP servers
(tests/daemon/fake_upstream.py) that count the calls they get, so a test can prove a
request never reached a model while it waited."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon.approvals.queue import Approvals, reasons_for
from daemon.config import ApprovalsConfig, load_config
from daemon.routing.router import Plan
from daemon.desktop.tray import DaemonLink
from tests.conftest import run_cli
from tests.daemon.chromium import Chromium, chromium_path
from tests.daemon.routing.test_memory_completions import WORD, wait_searchable
from tests.daemon.upstream_fixtures import model_entry

CHAT = "/v1/chat/completions"
SCREENSHOTS = Path(__file__).resolve().parents[3] / "bench" / "screenshots"


class Call(threading.Thread):
    """One chat request sent from another thread, as an agent would while it waits."""

    def __init__(self, d: Any, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(daemon=True)
        self.d, self.body, self.headers = d, body, headers or {}
        self.response: httpx.Response | None = None
        self.start()

    def run(self) -> None:
        with self.d.tcp() as c:
            self.response = c.post(CHAT, json=self.body, headers={**self.d.auth(),
                                                                   **self.headers})

    def result(self, timeout: float = 120) -> httpx.Response:
        self.join(timeout)
        assert self.response is not None, "the request never came back"
        return self.response


def pending(d: Any, want: int = 1, timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    with d.unix() as c:
        while time.monotonic() < deadline:
            rows = c.get("/v1/approvals", headers=d.auth()).json()["approvals"]
            if len(rows) >= want:
                return list(rows)
            time.sleep(0.2)
    raise AssertionError(f"no approval became pending:\n{d.log.read_text()[-3000:]}")


def body(text: str = "deploy the release", **extra: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": text}],
            "max_tokens": 16, **extra}


def test_approved_denied_and_timed_out_requests(make_config, start_daemon, upstreams) -> None:
    good = upstreams("good")
    config = make_config([], pipeline={"summarize": False}, router={
        "models": [model_entry(good)], "routes": {"default": ["good"]},
        "health_interval_seconds": 0},
        approvals={"tasks": ["deploy"], "timeout_seconds": 120})
    d = start_daemon(config)

    # Approved from the CLI: the request waits, untouched, then completes.
    call = Call(d, body(task="deploy"))
    [waiting] = pending(d)
    assert waiting["task"] == "deploy" and waiting["models"] == ["good"]
    assert waiting["reasons"][0]["reason"] == "task"
    assert waiting["what"]["preview"] == "deploy the release"
    assert waiting["requested_by"].startswith("admin token")
    listed = run_cli(config, "approvals").stdout
    assert waiting["id"] in listed and "task 'deploy' needs approval" in listed
    time.sleep(0.5)
    assert good.stats()["calls"] == 0  # nothing reached the model while it waited
    out = run_cli(config, "approve", waiting["id"], "--reason", "release day").stdout
    assert f"{waiting['id']} approved" in out
    r = call.result()
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["choices"][0]["message"]["content"] == "answer from good"
    approval = answer["memoryd"]["approval"]
    assert approval["id"] == waiting["id"] and approval["decision"] == "approved"
    assert approval["by"] == "cli" and approval["reason"] == "release day"
    assert good.stats()["calls"] == 1

    # Denied from the CLI, with a reason the caller reads in the 403.
    call = Call(d, body("drop the staging database"),
                headers={"X-Memoryd-Irreversible": "drops every staging table"})
    [waiting] = pending(d)
    assert waiting["reasons"] == [{"reason": "irreversible", "detail": (
        "the caller marked this step irreversible: drops every staging table")}]
    run_cli(config, "deny", waiting["id"], "--reason", "not before the backup")
    r = call.result()
    assert r.status_code == 403
    err = r.json()["error"]
    assert err["type"] == "approval_denied"
    assert "denied by the user (cli): not before the backup" in err["message"]
    assert good.stats()["calls"] == 1
    again = run_cli(config, "approve", waiting["id"], check=False)  # decided once, for good
    assert again.returncode == 1 and "already denied" in again.stderr

    # Nobody answers: the timeout denies it (this caller waits 3 s at most, less than the
    # configured 120). Secrets in the prompt stay out of the record.
    call = Call(d, body("rotate it: password=hunter2-very-secret", irreversible=True,
                        approval_timeout_seconds=3))
    [waiting] = pending(d)
    assert "hunter2" not in waiting["what"]["preview"]
    r = call.result()
    assert r.status_code == 403
    assert r.json()["error"]["type"] == "approval_timed_out"
    assert "timed out after 3 s" in r.json()["error"]["message"]
    assert good.stats()["calls"] == 1
    late = run_cli(config, "approve", waiting["id"], check=False)
    assert late.returncode == 1 and "already timed_out" in late.stderr

    # A caller that hangs up while it waits leaves nothing pending behind it.
    with d.tcp() as c, pytest.raises(httpx.ReadTimeout):
        c.post(CHAT, json=body(task="deploy"), headers=d.auth(), timeout=2)
    deadline = time.monotonic() + 30
    with d.unix() as c:
        while c.get("/v1/approvals", headers=d.auth()).json()["approvals"]:
            assert time.monotonic() < deadline, "the abandoned request stayed pending"
            time.sleep(0.2)

    # Every decision is recorded: who asked, what, when, why, who decided.
    rows = json.loads(run_cli(config, "approvals", "--all", "--json").stdout)["approvals"]
    assert [(a["status"], a["decided_by"]) for a in rows] == [
        ("abandoned", "memoryd"), ("timed_out", "memoryd"), ("denied", "cli"),
        ("approved", "cli")]
    assert all(a["created"] and a["decided"] >= a["created"] and a["requested_by"]
               and a["reasons"] for a in rows)
    # A request needing no approval goes straight through, and an unknown id is an error.
    with d.tcp() as c:
        assert c.post(CHAT, json=body("hello"), headers=d.auth()).status_code == 200
        assert c.post("/v1/approvals/nope/approve", headers=d.auth()).status_code == 404
        for bad in ({"irreversible": 5}, {"irreversible": "x" * 400},
                    {"approval_timeout_seconds": -1}):
            r = c.post(CHAT, json=body(**bad), headers=d.auth())
            assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request"
    assert good.stats()["calls"] == 2


def test_memory_goes_remote_only_once_approved(tmp_path: Path, make_config, start_daemon,
                                               upstreams) -> None:
    root = tmp_path / "work"
    root.mkdir()
    (root / "notes.md").write_text(f"Meeting notes: the {WORD} migration ships on Friday.\n")
    remote, local = upstreams("remote"), upstreams("local")
    config = make_config([root], pipeline={"summarize": False}, router={
        "models": [model_entry(remote, privacy="remote"), model_entry(local)],
        "routes": {"default": ["remote", "local"]}, "health_interval_seconds": 0},
        approvals={"memory_remote": True, "timeout_seconds": 120})
    d = start_daemon(config)
    wait_searchable(d, WORD)
    ask = body("When does the migration ship?", memory={"query": WORD, "budget_tokens": 300})

    call = Call(d, ask)
    [waiting] = pending(d)
    assert waiting["reasons"][0]["reason"] == "memory_remote"
    assert "remote model remote" in waiting["reasons"][0]["detail"]
    assert waiting["models"] == ["remote", "local"] and waiting["what"]["memory_ids"]
    time.sleep(0.5)
    assert remote.stats()["calls"] == 0 and local.stats()["calls"] == 0
    with d.unix() as c:  # the status page's button posts this, with the session cookie
        r = c.post(f"/v1/approvals/{waiting['id']}/approve", headers=d.auth(),
                   json={"via": "status page"})
        assert r.status_code == 200 and r.json()["status"] == "approved"
    r = call.result()
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "answer from remote"
    assert r.json()["memoryd"]["approval"]["by"] == "status page"
    sent = remote.stats()["last"]["messages"]
    assert sent[0]["role"] == "system" and WORD in sent[0]["content"]  # the memory went
    assert remote.stats()["calls"] == 1 and local.stats()["calls"] == 0

    # Denied: nothing leaves, and the caller is told why.
    call = Call(d, ask)
    [waiting] = pending(d)
    with d.unix() as c:
        c.post(f"/v1/approvals/{waiting['id']}/deny", headers=d.auth(), json={"via": "api"})
    assert call.result().status_code == 403
    assert remote.stats()["calls"] == 1 and local.stats()["calls"] == 0

    # The tray counts what waits.
    link = DaemonLink(load_config(config))
    call = Call(d, ask)
    pending(d)
    health = link.check()
    assert health.approvals == 1 and "1 request waiting for your approval" in health.line
    [waiting] = pending(d)
    run_cli(config, "deny", waiting["id"])
    assert call.result().status_code == 403
    assert link.check().approvals == 0


def test_rules_say_why_and_a_restart_abandons_what_waited(tmp_path: Path) -> None:
    cfg = ApprovalsConfig(tasks=("deploy",), memory_remote=True, max_cost_usd=0.01)
    plain = Plan(["local"], ["local"], [], "the 'default' route")
    assert reasons_for(cfg, "default", False, plain, 0) == []
    assert [r["reason"] for r in reasons_for(cfg, "deploy", "rm -rf build", plain, 0)] == [
        "task", "irreversible"]
    held = Plan(["local"], ["remote", "local"], [], "x", held=["remote"])
    assert reasons_for(cfg, "default", False, held, 3)[0]["reason"] == "memory_remote"
    fallback_only = Plan(["local"], ["local", "remote"], [], "x", held=["remote"])
    assert reasons_for(cfg, "default", False, fallback_only, 3) == []  # local comes first
    pricey = Plan(["big"], ["big"], [], "x", est_cost_usd=0.5)
    assert reasons_for(cfg, "default", False, pricey, 0)[0]["reason"] == "cost"
    assert reasons_for(ApprovalsConfig(irreversible=False), "x", True, plain, 0) == []
    # the caller's description is stored and logged: its secrets are redacted first
    described = reasons_for(cfg, "x", "psql postgres://app:Hunter2pw@db/prod -c 'drop x'",
                            plain, 0)
    assert "Hunter2pw" not in described[0]["detail"] and "drop x" in described[0]["detail"]

    path = tmp_path / "approvals.sqlite3"

    async def file_one() -> str:
        a = Approvals(path, cfg)
        aid = a.file(task="deploy", models=["local"], reasons=[], what={},
                     requested_by="test")
        a.close()
        return aid

    aid = asyncio.run(file_one())
    again = Approvals(path, cfg)  # a daemon that starts again: nobody waits for it now
    row = again.get(aid)
    assert row["status"] == "abandoned" and "stopped" in row["decision_reason"]
    with pytest.raises(ValueError, match="already abandoned"):
        again.decide(aid, True, "cli")


@pytest.mark.skipif(chromium_path() is None,
                    reason="Debian's chromium is not installed (tests/apt-packages.txt)")
def test_the_status_page_approves_and_shows_decisions_in_a_real_browser(
        tmp_path: Path, make_config, start_daemon, upstreams) -> None:
    good = upstreams("good")
    config = make_config([], pipeline={"summarize": False}, router={
        "models": [model_entry(good)], "routes": {"default": ["good"]},
        "health_interval_seconds": 0}, approvals={"tasks": ["deploy"]})
    d = start_daemon(config)
    with d.tcp() as c:  # one decision on record before the page opens
        first = c.post(CHAT, json=body("hello"), headers=d.auth()).json()["memoryd"]
    call = Call(d, body("ship build 1432 to production", task="deploy"))
    [waiting] = pending(d)

    browser = Chromium(tmp_path / "profile")
    try:
        browser.goto(run_cli(config, "open", "--print-url").stdout.strip())
        browser.wait_for("document.body && document.body.dataset.loaded === 'yes'")
        sel = f"#approvals [data-id=\"{waiting['id']}\"]"
        card = browser.wait_for(f"document.querySelector('{sel}')?.innerText")
        assert "task deploy → good" in card and "ship build 1432" in card
        row = browser.js(f"document.querySelector('#decisions tr[data-request="
                         f"\"{first['request_id']}\"]').innerText")
        assert "good" in row and "good answered as the first choice" in row
        shot = browser.screenshot(tmp_path / "approvals.png")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, SCREENSHOTS / "statuspage-approvals.png")
        browser.js(f"document.querySelector('{sel} input').focus()")
        browser.call("Input.insertText", session=True, text="build is green")
        browser.js(f"document.querySelector('{sel} button[data-verdict=approve]').click()")
        r = call.result()
        assert r.status_code == 200 and r.json()["memoryd"]["approval"]["by"] == "status page"
        assert r.json()["memoryd"]["approval"]["reason"] == "build is green"
        browser.wait_for("document.getElementById('approvals').dataset.pending === '0'")
        # the request it let through shows up among the decisions, approval and all
        rid = r.json()["memoryd"]["request_id"]
        shown = browser.wait_for(f"document.querySelector('#decisions tr[data-request="
                                 f"\"{rid}\"]')?.innerText", timeout=30)
        assert f"approval {waiting['id']}: approved by status page" in shown
    finally:
        browser.close()
