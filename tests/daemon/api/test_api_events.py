"""Pushed events (`POST /v1/events`): durable on 200, stored once, redacted, gated by
exclusions and pause, refused with a clear reason when malformed, and searchable."""

from __future__ import annotations

import time
from pathlib import Path


def _event(**over: object) -> dict[str, object]:
    e: dict[str, object] = {"source": "editor", "kind": "editor.open",
                            "subject": "/home/ana/src/kestrel/scoring.py",
                            "title": "scoring.py", "ts": "2026-11-24T09:30:00Z",
                            "text": "opened the lead-scoring weights; decay factor 0.74"}
    e.update(over)
    return e


def test_pushed_events_are_stored_once_redacted_and_searchable(make_config, start_daemon,
                                                                tmp_path: Path) -> None:
    cfg = make_config([], pipeline={"summarize": False},
                      privacy={"exclude_domains": ["bank.example"]})
    d = start_daemon(cfg)
    secret = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    batch = {"events": [
        _event(),
        _event(kind="agent.note", source="agent.planner", subject="note://standup",
               text=f"Priya owns CRM-2231; deploy token {secret}"),
        _event(kind="browser.visit", source="agent.planner",
               subject="https://bank.example/statement", text="balance"),
    ]}
    with d.tcp() as t:
        r = t.post("/v1/events", json=batch, headers=d.auth())
        assert r.status_code == 200, r.text
        assert r.json()["received"] == 3 and r.json()["stored"] == 2  # bank.example excluded
        again = t.post("/v1/events", json=batch, headers=d.auth()).json()
        assert again["stored"] == 0 and again["ids"] == r.json()["ids"]
        # the same subject and time with the caller's own key is a different event
        keyed = t.post("/v1/events", json={"events": [_event(key="second-open")]},
                       headers=d.auth()).json()
        assert keyed["stored"] == 1
        assert t.get("/v1/status", headers=d.auth()).json()["journal"]["total"] == 3

        deadline, hits = time.monotonic() + 120, []
        while time.monotonic() < deadline:
            hits = t.get("/v1/memory/search", params={"q": "CRM-2231 Priya", "k": 5},
                         headers=d.auth()).json()["results"]
            if any("CRM-2231" in h["text"] for h in hits):
                break
            time.sleep(1)
        found = [h for h in hits if "CRM-2231" in h["text"]]
        assert found, f"pushed event never became searchable: {hits}"
        assert secret not in found[0]["text"] and "ghp_" not in found[0]["text"]
        assert found[0]["source"] == "agent.planner"


def test_pause_and_bad_input_are_answered_clearly(make_config, start_daemon,
                                                  tmp_path: Path) -> None:
    d = start_daemon(make_config([], pipeline={"summarize": False}))
    with d.tcp() as t:
        bad = [
            ({"events": []}, "at least 1"),
            ({"events": [_event(ts="2026-11-24T09:30:00")]}, "time zone"),
            ({"events": [_event(source="shell")]}, "belongs to memoryd"),
            ({"events": [_event(source="Has Spaces")]}, "pattern"),
            ({"events": [_event(surprise=1)]}, "xtra"),
            ({"events": [_event(subject="")]}, "at least 1 character"),
        ]
        for body, why in bad:
            r = t.post("/v1/events", json=body, headers=d.auth())
            assert r.status_code == 422 and why in r.text, (body, r.text)
        r = t.post("/v1/events", content=b"{not json", headers={
            **d.auth(), "Content-Type": "application/json"})
        assert r.status_code == 422
        assert t.post("/v1/events", json={"events": [_event()]}).status_code == 401

        assert t.post("/v1/pause", headers=d.auth()).status_code == 200
        r = t.post("/v1/events", json={"events": [_event()]}, headers=d.auth()).json()
        assert r["paused"] is True and r["stored"] == 0
        t.post("/v1/resume", headers=d.auth())
        r = t.post("/v1/events", json={"events": [_event()]}, headers=d.auth()).json()
        assert r["paused"] is False and r["stored"] == 1
