"""The CLI contract: ingest --once, search --json, status — against real models and store."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from daemon.store.lance import Store
from tests.conftest import model_answers, run_cli, stored_memories

# device and user: who wrote it (store schema 3, daemon/owners.py)
RESULT_KEYS = {"id", "source", "kind", "ts", "title", "text", "score", "device", "user"}


def test_ingest_once_then_search_json_keeps_the_contract(make_config, tmp_path: Path) -> None:
    root = tmp_path / "src"
    (root / "crm").mkdir(parents=True)
    (root / "crm" / "score.py").write_text(
        "def lead_score(lead):\n    # the marmalade coefficient, agreed with Priya on Monday\n"
        "    return lead.budget * 0.37\n")
    (root / "crm" / "NOTES.md").write_text("TODO: ship the lead-scoring v2 threshold (PR #482)\n")
    (root / "crm" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00" + os.urandom(512))
    # the model reads chunks that state a task (the TODO); the default reads none
    cfg = make_config([root], compaction={"chunk_model": "stated"})
    out = run_cli(cfg, "ingest", "--once")
    assert "collected 3 new events" in out.stdout

    res = json.loads(run_cli(cfg, "search", "--json", "-k", "3", "marmalade coefficient").stdout)
    results = res["results"]
    assert 1 <= len(results) <= 3
    for r in results:
        assert set(r) == RESULT_KEYS
        assert r["ts"].endswith("Z")
        assert datetime.fromisoformat(r["ts"]).utcoffset().total_seconds() == 0
        assert isinstance(r["score"], float)
    top = [r for r in results if r["kind"] == "file.modified"][0]
    assert top["source"] == "files" and "marmalade coefficient" in top["text"]
    assert top["title"] == "score.py"

    # the summary was written by the local model and is itself searchable (asked by kind:
    # in a mixed search a chunk and its own events share one slot, see daemon/search.py)
    mems = json.loads(run_cli(cfg, "search", "--json", "--source", "files", "--kind",
                              "memory.chunk", "-k", "10", "lead scoring").stdout)["results"]
    summaries = [r for r in mems if r["kind"] == "memory.chunk"]
    assert summaries, mems
    assert len(summaries[0]["text"].split()) >= 5
    # the bundled GGUF read the chunk (its TODO line states a task) and answered; the
    # memory carries its name exactly when the answer passed the faithfulness check
    written = {m["id"]: m["model"] for m in stored_memories(tmp_path / "data")}
    [answer] = model_answers(tmp_path / "data", summaries[0]["id"])
    assert answer["model"] == "qwen2.5-coder-0.5b-instruct"
    assert written[summaries[0]["id"]] == (
        "deterministic" if answer["fallback"] else answer["model"]), answer
    assert summaries[0]["text"] not in {r["text"] for r in mems if r["kind"] != "memory.chunk"}

    # a second ingest finds nothing new
    assert "collected 0 new events" in run_cli(cfg, "ingest", "--once").stdout
    status = json.loads(run_cli(cfg, "status", "--json").stdout)
    assert status["journal"] == {"new": 0, "indexed": 0, "summarized": 3, "total": 3}
    assert "not running" in status["daemon"]
    human = run_cli(cfg, "search", "PR 482").stdout
    assert "NOTES.md" in human


WORDS = ["amber", "basalt", "cinder", "dune", "ember", "fjord", "garnet", "harbor", "islet",
         "juniper", "kelp", "lichen", "meadow", "nectar", "onyx", "prairie", "quartz", "reef"]


def _tree(root: Path, n: int) -> dict[Path, str]:
    rng = random.Random(3)
    phrases = {}
    for i in range(n):
        folder = root / f"project{i % 7}" / ("docs" if i % 3 else "src")
        folder.mkdir(parents=True, exist_ok=True)
        phrase = f"{rng.choice(WORDS)} marker zx{i:04d}q"  # not "token": that reads as a credential
        body = "\n".join(f"line {k}: " + " ".join(rng.choices(WORDS, k=8)) for k in range(20))
        path = folder / f"file{i}.{'md' if i % 2 else 'txt'}"
        path.write_text(f"{body}\nThe distinctive phrase is {phrase}.\n{body}\n")
        phrases[path] = phrase
    return phrases


@pytest.mark.parametrize("files", [
    # slow: ~3 minutes on 2 quiet cores (13 under load, where the resumed ingest can pass
    # run_cli's 600 s). Retrieval holds: two builds of it (one clean, one killed and
    # resumed) found all 120 phrases at ranks 1-3 of 5; the day/week digests, which list
    # every identifier, usually take rank 1.
    16,  # every run: the same kill and resume, small enough for CI (about a minute)
    pytest.param(120, marks=pytest.mark.slow),
    pytest.param(400, marks=pytest.mark.slow),  # a few hundred files: minutes on 2 cores
])
def test_backfill_survives_kill_9_and_finds_every_file(make_config, tmp_path: Path,
                                                       files: int) -> None:
    root = tmp_path / "src"
    phrases = _tree(root, files)
    cfg = make_config([root])
    data = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, "-m", "daemon.cli", "--config", str(cfg), "ingest",
                             "--once"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # kill -9 once the pipeline is part-way: some events indexed, summaries under way
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with sqlite3.connect(data / "journal.sqlite3") as c:
                if c.execute("SELECT COUNT(*) FROM events WHERE stage>0").fetchone()[0]:
                    break
        except sqlite3.Error:
            pass
        time.sleep(0.2)
    time.sleep(random.Random(5).uniform(0.5, 4.0))
    assert proc.poll() is None, "ingest finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    started = time.monotonic()
    out = run_cli(cfg, "ingest", "--once")
    resumed_seconds = time.monotonic() - started
    assert "collected 0 new events" in out.stdout  # the journal had everything already

    store = Store(data / "store", 384, "all-minilm-l6-v2")
    ids = store.events.to_arrow().column("id").to_pylist()
    assert len(ids) == len(set(ids)) == files
    mem_ids = store.memories.to_arrow().column("id").to_pylist()
    assert len(mem_ids) == len(set(mem_ids))
    linked = [e for evs in store.memories.to_arrow().column("event_ids").to_pylist() for e in evs]
    assert len(linked) == len(set(linked)) == files  # every event in exactly one memory
    with sqlite3.connect(data / "journal.sqlite3") as c:
        assert c.execute("SELECT stage, COUNT(*) FROM events GROUP BY stage").fetchall() == [(2, files)]

    # every file is found by its distinctive phrase
    from daemon.config import load_config
    from daemon.store.engine import Engine

    engine = Engine(load_config(cfg))
    missed = []
    for path in sorted(phrases):
        hits = engine.search(phrases[path], k=5)
        # a file's event may stand as a hit, or be folded under the chunk memory that
        # summarizes it (search gives one slot per activity)
        found = {h.title for h in hits} | {c.title for h in hits for c in h.covers}
        if str(path.name) not in found:
            missed.append(path.name)
    engine.close()
    assert not missed, f"not found by their phrase: {missed}"
    print(f"resumed ingest of {files} files took {resumed_seconds:.1f} s")


SEARCH_BOTH_WAYS = """
import json, sys
from daemon.cli.main import _search_local
from daemon.config import load_config
from daemon.store.engine import Engine
cfg = load_config(sys.argv[1])
hits = _search_local(cfg, "marmalade coefficient", 3, None)
fast = [(r["id"], round(r["score"], 4)) for r in hits]
torch_loaded = "torch" in sys.modules
engine = Engine(cfg)
slow = [(h.id, round(h.score, 4)) for h in engine.search("marmalade coefficient", 3)]
print(json.dumps({"torch_loaded": torch_loaded, "fast": fast, "slow": slow}))
"""


def test_a_search_without_the_daemon_loads_no_torch_and_ranks_the_same(
        make_config, tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    (root / "score.py").write_text("# the marmalade coefficient, agreed with Priya\nK = 0.37\n")
    (root / "notes.md").write_text("lunch with the team on Friday\n")
    cfg = make_config([root])
    run_cli(cfg, "ingest", "--once")  # ends by making the ONNX export if there is none
    out = subprocess.run([sys.executable, "-c", SEARCH_BOTH_WAYS, str(cfg)], check=True,
                         capture_output=True, text=True, timeout=600)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["torch_loaded"] is False  # the query went through the ONNX export
    assert got["fast"] and got["fast"] == got["slow"]  # the stored vectors' own numbers
