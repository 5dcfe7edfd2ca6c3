"""Memory tells the truth about itself: every way it can be unavailable or degraded is
caused for real under a running daemon, and /v1/status (`memory.available`,
`memory.degraded`), the tray's judgement, the status page's script and MCP say which and
why; when the cause goes, so does the reason.

Caused for real: the store's disk full (a real small tmpfs filled to ENOSPC) and
read-only (a remount); a summarizer GGUF llama.cpp cannot load; a configured shell
history that cannot be read (a folder where the file should be: this box runs the tests
as root, which reads files whatever their mode); a sync target on a read-only mount; an
embedder that does not exist; a model worker killed -9 three times.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from daemon.config import load_config
from daemon.desktop.tray import judge
from daemon.store.worker import CRASH_LOOP, WorkerEngine
from tests.conftest import run_cli
from tests.daemon.store.test_store_full import _fill
from tests.tmpfs import small_tmpfs


def _status(d: Any) -> dict[str, Any]:
    with d.unix() as c:
        r = c.get("/v1/status", headers=d.auth())
        assert r.status_code == 200, r.text
        return dict(r.json())


def _codes(st: dict[str, Any]) -> set[str]:
    return {p["code"] for p in st["memory"]["degraded"]}


def _wait_for(d: Any, cond: Any, timeout: float, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    st: dict[str, Any] = {}
    while time.monotonic() < deadline:
        st = _status(d)
        if cond(st):
            return st
        assert d.proc.poll() is None, f"the daemon died:\n{d.log.read_text()}"
        time.sleep(0.5)
    raise AssertionError(f"{what}: {json.dumps(st.get('memory'))}\n{d.log.read_text()[-4000:]}")


def _mcp_status(d: Any) -> tuple[dict[str, Any], list[str]]:
    """memory_status, and the text blocks memory_search answers with, over /mcp."""
    async def go() -> tuple[dict[str, Any], list[str]]:
        http = httpx2.AsyncClient(headers=d.auth(), timeout=120)
        async with http, Client(streamable_http_client(f"http://127.0.0.1:{d.port}/mcp",
                                                       http_client=http)) as mcp:
            st = await mcp.call_tool("memory_status", {})
            found = await mcp.call_tool("recent_activity", {"limit": 1})
            return json.loads(st.content[0].text), [c.text for c in found.content]

    return anyio.run(go)


def test_store_disk_full_then_read_only_make_memory_unavailable_with_the_reason(
        make_config, start_daemon, tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "data" / "store", "8m") as disk:
        config = make_config(pipeline={"summarize": False})
        d = start_daemon(config)
        reader = json.loads(run_cli(config, "token", "create", "--json", "--name", "reader",
                                    "--scope", "memory:read").stdout)["token"]
        st = _status(d)
        assert st["memory"]["available"] is True and st["memory"]["degraded"] == []
        assert judge(st, None).state == "ok"

        filler = _fill(disk)
        st = _wait_for(d, lambda s: not s["memory"]["available"], 30, "full not seen")
        full = st["memory"]["degraded"][0]
        assert full["code"] == "store_full" and "full" in full["message"] and full["since"]
        tray = judge(st, None)
        assert tray.state == "unavailable" and "disk holding memory" in tray.line
        with d.unix() as c:  # a reader without the admin scope: the reason, not the path
            mine = c.get("/v1/status", headers={"Authorization": f"Bearer {reader}"}).json()
        assert mine["memory"]["available"] is False
        codes = [p["code"] for p in mine["memory"]["degraded"]]
        # (a new store cannot even make its tables on a full disk: unreadable too)
        assert codes[0] == "store_full" and set(codes) <= {"store_full", "store_unreadable"}
        assert "full" in mine["memory"]["degraded"][0]["message"]
        assert str(tmp_path) not in json.dumps(mine)
        mcp_memory, blocks = _mcp_status(d)
        assert mcp_memory["available"] is False and "store_full" in json.dumps(mcp_memory)
        # the read answers, or fails (a new store cannot make its tables on a full disk):
        # either way the agent reads that memory is unavailable, and why
        said = "\n".join(blocks)
        assert "memoryd status: memory is UNAVAILABLE" in said and "full" in said, said
        text = run_cli(config, "status").stdout  # and so does the terminal
        assert re.search(r"^memory:\s+UNAVAILABLE: .*disk holding memory .*full", text,
                         re.M), text

        filler.unlink()
        st = _wait_for(d, lambda s: s["memory"]["available"], 30, "space freed, still down")
        assert st["memory"]["degraded"] == []
        _, blocks = _mcp_status(d)
        assert len(blocks) == 1  # healthy: the answer only, no note

        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        try:
            st = _wait_for(d, lambda s: "store_read_only" in _codes(s), 30, "ro not seen")
            assert st["memory"]["available"] is False
            assert "read-only" in judge(st, None).line
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
        _wait_for(d, lambda s: s["memory"]["available"], 30, "writable again, still down")


def test_summarizer_collector_and_sync_failures_degrade_memory_with_reasons(
        make_config, start_daemon, tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 4096)  # a header and nothing llama.cpp can load
    history = tmp_path / "home" / ".bash_history"
    history.mkdir(parents=True)  # where the history file should be: unreadable as a file
    root = tmp_path / "src"
    root.mkdir()
    note = root / "note.md"
    note.write_text("the quarterly plan for the basalt project\n")
    old = (datetime.now(UTC) - timedelta(hours=2)).timestamp()
    os.utime(note, (old, old))  # an old event: its chunk is closed and summarized at once
    with small_tmpfs(tmp_path / "target", "1m") as target:
        subprocess.run(["mount", "-o", "remount,ro", str(target)], check=True)
        config = make_config(
            [root], models={"summarizer": str(broken)},
            compaction={"chunk_model": "always"},  # every chunk waits for the broken model
            collectors={"shell": {"enabled": True, "history_files": [str(history)]}},
            sync={"targets": [{"name": "nas", "url": f"dir://{target}",
                               "interval_seconds": 1.0}]})
        d = start_daemon(config)
        want = {"summarizer_failed", "collector_failed", "sync_target_down"}
        st = _wait_for(d, lambda s: want <= _codes(s), 240, "not every failure reported")
        assert st["memory"]["available"] is True  # memory works: it is degraded, not down
        text = run_cli(config, "status").stdout
        assert re.search(r"^memory:\s+degraded: .*the shell collector is failing", text,
                         re.M), text
        by_code = {p["code"]: p for p in st["memory"]["degraded"]}
        assert by_code["collector_failed"]["subject"] == "shell"
        assert str(history) in by_code["collector_failed"]["message"]
        assert "not writable" in by_code["sync_target_down"]["message"]
        assert "summarized" in by_code["summarizer_failed"]["message"]
        tray = judge(st, None)
        assert tray.state == "degraded"
        assert all(w in tray.line for w in ("summarizer", "shell", "nas"))
        _, blocks = _mcp_status(d)
        assert len(blocks) == 2 and "degraded" in blocks[1] and "nas" in blocks[1]

        history.rmdir()
        history.write_text("ls\n")  # readable now: the collector's reason goes
        _wait_for(d, lambda s: "collector_failed" not in _codes(s), 60, "collector reason stayed")

        # the target comes back; a push the guard refuses (no memory written: the
        # summarizer is broken, so the snapshot is empty) is the next reason
        subprocess.run(["mount", "-o", "remount,rw", str(target)], check=True)
        _wait_for(d, lambda s: "sync_target_down" not in _codes(s), 60, "target stayed down")
        push = run_cli(config, "sync", "push", "--target", "nas", check=False)
        assert push.returncode == 4 and "empty" in push.stderr, push.stderr
        st = _wait_for(d, lambda s: "sync_refused" in _codes(s), 30, "refusal not reported")
        refused = [p for p in st["memory"]["degraded"] if p["code"] == "sync_refused"][0]
        assert refused["subject"] == "nas" and "empty" in refused["message"]
        assert st["memory"]["available"] is True and "nas" in st["memory"]["reason"]


def test_an_embedder_that_cannot_load_makes_memory_unavailable(
        make_config, start_daemon, tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    (root / "a.md").write_text("something to index\n")
    d = start_daemon(make_config([root], models={"embedder": "no-such-embedder"},
                                 pipeline={"summarize": False}))
    st = _wait_for(d, lambda s: not s["memory"]["available"], 120, "embedder failure unseen")
    # the engine that cannot start says why: the embedder, not an unreadable store
    assert "embedder_failed" in _codes(st) and "store_unreadable" not in _codes(st), \
        st["memory"]
    assert "no-such-embedder" in json.dumps(st["memory"]["degraded"])


def test_a_worker_that_keeps_crashing_is_reported(make_config) -> None:
    engine = WorkerEngine(load_config(make_config()), idle_seconds=600)
    try:
        assert engine.crash_loop() is None
        for _ in range(CRASH_LOOP[0]):
            with engine._lock:  # what a call does first: start the worker process
                engine._start()
            pid = engine.pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while engine._conn is not None and time.monotonic() < deadline:
                time.sleep(0.1)  # until the reader has seen the pipe close
        problem = engine.crash_loop()
        assert problem is not None and problem.code == "worker_crash_loop"
        assert f"crashed {CRASH_LOOP[0]} times" in problem.message
    finally:
        engine.close()


def _immutable(folder: Path, on: bool) -> None:
    """chattr ±i on every folder of the store: nothing can be created in them, by root
    either (EPERM), which is how this root-run box makes files unwritable for real."""
    dirs = [str(p) for p in [folder, *folder.rglob("*")] if p.is_dir()]
    subprocess.run(["chattr", "+i" if on else "-i", *dirs], check=True)


def test_a_store_whose_files_cannot_be_written_is_unavailable_then_recovers(
        make_config, start_daemon, tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    (root / "first.md").write_text("the first note, about the granite cache\n")
    d = start_daemon(make_config([root], pipeline={"summarize": False}))
    _wait_for(d, lambda s: s["journal"]["indexed"] + s["journal"]["summarized"] >= 1, 120,
              "the first note was not indexed")
    store = tmp_path / "data" / "store"
    _immutable(store, True)
    try:
        (root / "second.md").write_text("the second note, about the walnut ledger\n")
        # reported (by the disk probe at once, by the failed index write once the note
        # is journaled), and the note waits in the journal
        st = _wait_for(d, lambda s: "store_unwritable" in _codes(s)
                       and s["journal"]["total"] >= 2, 120,
                       "an unwritable store was not reported")
        assert st["memory"]["available"] is False
        [problem] = [p for p in st["memory"]["degraded"] if p["code"] == "store_unwritable"]
        assert "cannot be written" in problem["message"] or "not writable" in problem["message"]
        assert "unavailable" == judge(st, None).state
        assert st["journal"]["new"] >= 1
    finally:
        _immutable(store, False)
    _wait_for(d, lambda s: s["memory"]["available"] and s["journal"]["new"] == 0, 120,
              "writable again, still down")
    with d.unix() as c:
        hits = c.get("/v1/memory/search", params={"q": "walnut ledger", "k": 3},
                     headers=d.auth()).json()["results"]
    assert any("walnut ledger" in h["text"] for h in hits), hits
