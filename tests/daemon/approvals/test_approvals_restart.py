"""Waiting approvals survive a daemon restart, on real daemons: a request sent with an
Idempotency-Key waits; the daemon is stopped (SIGTERM) and the waiting caller is told to
come back; the daemon starts again with the row still pending; the caller sends the same
request with the same key, the user approves it with `memoryd approve`, and the caller
gets the model's answer. A key sent with a different request is refused, an approval
already answered is not used twice, and a request whose caller never comes back is
recorded abandoned with a reason saying so."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from tests.conftest import run_cli
from tests.daemon.approvals.test_approvals import CHAT, Call, body, pending
from tests.daemon.upstream_fixtures import model_entry


def _stop(d: Any) -> None:
    d.proc.send_signal(signal.SIGTERM)
    d.proc.wait(timeout=60)


def _rows(d: Any, status: str = "all") -> list[dict[str, Any]]:
    with d.unix() as c:
        return list(c.get("/v1/approvals", params={"status": status},
                          headers=d.auth()).json()["approvals"])


def test_a_caller_that_comes_back_after_a_restart_gets_its_answer(
        make_config, start_daemon, upstreams, tmp_path: Path) -> None:
    good = upstreams("good")
    config = make_config([], pipeline={"summarize": False}, router={
        "models": [model_entry(good)], "routes": {"default": ["good"]},
        "health_interval_seconds": 0},
        approvals={"tasks": ["deploy"], "timeout_seconds": 300, "reattach_seconds": 120})
    key = {"Idempotency-Key": "deploy-2026-12-02-a"}
    d = start_daemon(config)
    call = Call(d, body(task="deploy"), headers=key)
    [waiting] = pending(d)
    aid = waiting["id"]
    keyless = Call(d, body("a request without a key", task="deploy"))
    pending(d, want=2)

    started = time.monotonic()
    _stop(d)  # the waiting requests answer at once instead of holding up the shutdown
    assert time.monotonic() - started < 30
    r = call.result()
    assert r.status_code == 503, r.text
    assert r.json()["error"]["type"] == "approval_interrupted"
    assert "same Idempotency-Key" in r.json()["error"]["message"]
    assert keyless.result().status_code == 503

    d = start_daemon(config)
    rows = {a["id"]: a for a in _rows(d)}
    assert rows[aid]["status"] == "pending"  # still waiting for its caller
    [gone] = [a for a in rows.values() if a["id"] != aid]
    assert gone["status"] == "abandoned" and "no Idempotency-Key" in gone["decision_reason"]

    with d.tcp() as c:  # the same key with another request: refused, nothing filed
        r = c.post(CHAT, json=body("deploy something else", task="deploy"),
                   headers={**d.auth(), **key})
    assert r.status_code == 409 and r.json()["error"]["type"] == "idempotency_key_conflict"
    assert "different request" in r.json()["error"]["message"]

    call = Call(d, body(task="deploy"), headers=key)  # the caller comes back
    time.sleep(1.0)
    assert good.stats()["calls"] == 0
    assert [a["id"] for a in _rows(d, "pending")] == [aid]  # re-attached, not filed again
    assert f"{aid} approved" in run_cli(config, "approve", aid, "--reason", "go").stdout
    r = call.result()
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "answer from good"
    assert r.json()["memoryd"]["approval"]["id"] == aid
    assert good.stats()["calls"] == 1

    with d.tcp() as c:  # the approval was used: the same key does not run it twice
        r = c.post(CHAT, json=body(task="deploy"), headers={**d.auth(), **key})
    assert r.status_code == 409 and "already answered" in r.json()["error"]["message"]
    assert good.stats()["calls"] == 1


def test_a_caller_that_never_comes_back_is_recorded_abandoned(
        make_config, start_daemon, upstreams) -> None:
    good = upstreams("good")
    config = make_config([], pipeline={"summarize": False}, router={
        "models": [model_entry(good)], "routes": {"default": ["good"]},
        "health_interval_seconds": 0},
        approvals={"tasks": ["deploy"], "timeout_seconds": 300, "reattach_seconds": 3})
    d = start_daemon(config)
    call = Call(d, body(task="deploy"), headers={"Idempotency-Key": "never-back"})
    [waiting] = pending(d)
    _stop(d)
    assert call.result().status_code == 503

    d = start_daemon(config)
    deadline = time.monotonic() + 60
    while (row := _rows(d)[0])["status"] == "pending":
        assert time.monotonic() < deadline, "the orphaned approval stayed pending"
        time.sleep(0.3)
    assert row["id"] == waiting["id"] and row["status"] == "abandoned"
    assert "did not send it again" in row["decision_reason"]
    late = run_cli(config, "approve", row["id"], check=False)
    assert late.returncode == 1 and "already abandoned" in late.stderr
    assert good.stats()["calls"] == 0
