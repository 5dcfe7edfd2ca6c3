"""The running daemon: served on a 0600 Unix socket and 127.0.0.1 only, token required,
Host checked, and a saved file becomes searchable memory with a local-model summary."""

from __future__ import annotations

import re
import stat
import time
from pathlib import Path

from daemon.pipeline.summarize import FALLBACK_MODEL
from tests.conftest import model_answers, run_cli, stored_memories

SUMMARIZER = "qwen2.5-coder-0.5b-instruct"  # the default [models] summarizer


def test_daemon_serves_health_and_guards_everything_else(make_config, start_daemon,
                                                         tmp_path: Path) -> None:
    d = start_daemon(make_config([tmp_path / "src"]))
    assert stat.S_IMODE(d.socket.stat().st_mode) == 0o600
    assert stat.S_IMODE((d.data_dir / "token").stat().st_mode) == 0o600
    with d.unix() as u, d.tcp() as t:
        assert u.get("/health").json()["status"] == "ok"
        assert t.get("/health").status_code == 200
        # no token, a wrong token, a wrong scheme: refused on both listeners
        for client in (u, t):
            r = client.get("/v1/memory/search", params={"q": "x"})
            assert r.status_code == 401 and "token" in r.json()["error"]["message"]
            r = client.get("/v1/status", headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 401
            r = client.get("/v1/status", headers={"Authorization": f"Basic {d.token}"})
            assert r.status_code == 401
        assert t.get("/v1/status", headers=d.auth()).json()["journal"]["total"] == 0
        # DNS rebinding: a foreign Host header is refused even with the token
        r = t.get("/v1/status", headers={**d.auth(), "Host": "attacker.example:7077"})
        assert r.status_code == 421
        assert t.get("/health", headers={"Host": "[::1]:7077"}).status_code == 200
        # malformed and oversized requests get clear JSON errors
        r = t.get("/v1/memory/search", params={"q": "x", "k": "many"}, headers=d.auth())
        assert r.status_code == 422
        r = t.post("/v1/memory/search", content=b"x" * 2_000_000, headers=d.auth())
        assert r.status_code == 413 and "limited" in r.json()["error"]["message"]
        r = t.get("/v1/memory/search", params={"q": "   "}, headers=d.auth())
        assert r.status_code == 400
        assert "/v1/memory/search" in t.get("/openapi.json").json()["paths"]
    # only loopback: the TCP listener is bound to 127.0.0.1, nothing else
    import psutil

    listens = [c.laddr for c in psutil.Process(d.proc.pid).net_connections("inet")
               if c.status == psutil.CONN_LISTEN]
    assert listens and all(a.ip == "127.0.0.1" for a in listens)


def test_a_saved_file_is_found_with_a_summary_from_the_local_model(make_config, start_daemon,
                                                                   tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    # the model reads chunks that state a task ("open question"); the default reads none
    cfg = make_config([root], pipeline={"chunk_close_after_seconds": 5.0},
                      compaction={"chunk_model": "stated"})
    d = start_daemon(cfg)
    note = root / "standup.md"
    note.write_text("Standup: Priya takes ticket CRM-2231, the kestrel dashboard "
                    "ships Thursday; open question about the churn threshold.\n")
    saved = time.monotonic()
    found_event = found_summary = None
    with d.unix() as u:
        # bounded only so a broken pipeline fails the test; how fast is bench/'s question
        while time.monotonic() - saved < 600 and not found_summary:
            r = u.get("/v1/memory/search", params={"q": "kestrel dashboard CRM-2231", "k": 5},
                      headers=d.auth())
            assert r.status_code == 200, r.text
            # a chunk and its own events share one slot in a mixed search: ask for it by kind
            m = u.get("/v1/memory/search", params={"q": "kestrel dashboard CRM-2231", "k": 5,
                                                   "kind": "memory.chunk"}, headers=d.auth())
            for hit in r.json()["results"] + m.json()["results"]:
                if hit["kind"] == "file.modified" and "CRM-2231" in hit["text"]:
                    found_event = found_event or time.monotonic() - saved
                if hit["kind"] == "memory.chunk" and "standup.md" in hit["title"]:
                    found_summary = time.monotonic() - saved
                    summary = hit["text"]
            time.sleep(2.0)
    assert found_event is not None, d.log.read_text()
    assert found_summary is not None, d.log.read_text()
    assert len(summary.split()) >= 5
    assert summary.strip() != note.read_text().strip()
    # the bundled GGUF read this chunk and answered; the memory carries its name exactly
    # when its answer passed the faithfulness check (the 0.5B's topic line often names
    # what the note does not say, and is then dropped: the memory is the extracted one)
    [mem] = [m for m in stored_memories(tmp_path / "data")
             if m["level"] == "chunk" and "standup.md" in m["title"]]
    [answer] = model_answers(tmp_path / "data", mem["id"])
    assert answer["model"] == SUMMARIZER
    assert mem["model"] == (FALLBACK_MODEL if answer["fallback"] else SUMMARIZER), (mem, answer)
    print(f"searchable after {found_event:.1f} s, summarized after {found_summary:.1f} s")
    with d.unix() as u:
        status = u.get("/v1/status", headers=d.auth()).json()
    assert status["journal"]["summarized"] == 1
    files = {h["name"]: h for h in status["collectors"]["running"]}["files"]
    assert files["runs"] >= 1 and files["last_run"] and files["last_error"] is None
    assert status["engine"]["models_loaded"]["summarizer"] is True
    # `memoryd status` says the same in words, not as the engine's raw figures
    text = run_cli(cfg, "status").stdout
    assert re.search(r"^memory:\s+working$", text, re.M), text
    assert re.search(r"^store:\s+[1-9][\d,]* events, [1-9][\d,]* memories", text, re.M), text
    assert re.search(r"^worker:\s+running \(pid \d+\), models loaded: .*summarizer", text,
                     re.M), text
    assert re.search(r"^reader:\s+running \(pid \d+\), [1-9][\d,]* reads? answered", text,
                     re.M), text
    assert "models_loaded" not in text and "engine:" not in text
