"""kill -9 at random points of the daemon's pipeline, then restart: nothing lost, nothing
twice, counted against what the collector saw.

A real `memoryd run` (real journal, worker, llama.cpp, MiniLM, LanceDB) collects files
written between rounds. In each round the model worker and/or the daemon are SIGKILLed
after random delays from a seeded RNG (the seed is in every failure message; set
MEMORYD_CRASH_SEED to replay one), while events are being indexed, summarized, embedded
and stored. At the end a last daemon finishes the work, and every file written is one
journaled event, one stored event and in exactly one chunk memory.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import time
from pathlib import Path

import psutil

from daemon.store.lance import Store

ROUNDS = 3
SUMMARY_SECONDS = 25.0  # about one chunk summary on 2 busy cores: kills land in or between


def _wait_for(cond, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.2)


def _worker_pids(daemon_pid: int) -> list[int]:
    """The model worker: the daemon's spawned child (python -m daemon.store.child)."""
    try:
        kids = psutil.Process(daemon_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for k in kids:
        try:
            cmd = " ".join(k.cmdline())
        except psutil.Error:
            continue
        if "daemon.store.child" in cmd:
            out.append(k.pid)
    return out


def _stages(journal: Path) -> dict[int, int]:
    try:
        with sqlite3.connect(journal) as c:
            return dict(c.execute("SELECT stage, COUNT(*) FROM events GROUP BY stage"))
    except sqlite3.Error:
        return {}


def _write_files(root: Path, rng: random.Random, first: int, n: int) -> list[Path]:
    paths = []
    for i in range(first, first + n):
        folder = root / f"project{rng.randrange(3)}"
        folder.mkdir(parents=True, exist_ok=True)
        p = folder / f"note{i}.md"
        p.write_text(f"note {i}: the crash drill token zq{i:04d}x for round planning\n")
        paths.append(p)
    return paths


def test_kill_9_during_the_pipeline_loses_and_repeats_nothing(make_config, start_daemon,
                                                             tmp_path: Path) -> None:
    seed = int(os.environ.get("MEMORYD_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    print(f"crash seed {seed}")
    root = tmp_path / "src"
    root.mkdir()
    cfg = make_config([root], pipeline={"interval_seconds": 0.5, "chunk_max_events": 3,
                                        "chunk_close_after_seconds": 1.0},
                      compaction={"enabled": False, "chunk_max_tokens": 24})
    data = tmp_path / "data"
    journal = data / "journal.sqlite3"
    written: list[Path] = []
    kills: list[str] = []
    for rnd in range(ROUNDS):
        written += _write_files(root, rng, len(written), rng.randint(2, 4))
        d = start_daemon(cfg)
        if rng.random() < 0.75:  # mostly past indexing, into summaries and their writes
            _wait_for(lambda: _stages(journal).get(1, 0) + _stages(journal).get(2, 0) > 0, 120)
        for _ in range(rng.randint(0, 2)):  # the worker dies mid-call; the daemon lives on
            time.sleep(rng.uniform(0.5, SUMMARY_SECONDS))
            for pid in _worker_pids(d.proc.pid):
                os.kill(pid, signal.SIGKILL)
                kills.append(f"round {rnd}: worker at {_stages(journal)}")
        time.sleep(rng.uniform(0.2, SUMMARY_SECONDS))
        d.proc.send_signal(signal.SIGKILL)  # and then the daemon (its worker follows it)
        d.proc.wait()
        kills.append(f"round {rnd}: daemon at {_stages(journal)}")
    why = f"crash seed {seed} (MEMORYD_CRASH_SEED={seed} replays it); kills: {kills}"

    d = start_daemon(cfg)
    deadline = time.monotonic() + 480
    while _stages(journal) != {2: len(written)} and time.monotonic() < deadline:
        assert d.proc.poll() is None, f"{why}\n{d.log.read_text()}"
        time.sleep(1.0)
    assert _stages(journal) == {2: len(written)}, f"{why}: {_stages(journal)}\n{d.log.read_text()}"
    d.proc.send_signal(signal.SIGTERM)
    d.proc.wait(timeout=60)

    # counted against what the collector saw: each file written is one journaled event
    with sqlite3.connect(journal) as c:
        rows = c.execute("SELECT id, subject FROM events").fetchall()
    assert sorted(s for _, s in rows) == sorted(str(p) for p in written), why
    journaled = {i for i, _ in rows}

    store = Store(data / "store", 384, "all-minilm-l6-v2")
    ids = store.events.to_arrow().column("id").to_pylist()
    assert len(ids) == len(set(ids)) and set(ids) == journaled, why
    mems = store.memories.to_arrow().select(["id", "level", "event_ids"]).to_pylist()
    chunks = [m for m in mems if m["level"] == "chunk"]
    assert len({m["id"] for m in mems}) == len(mems), why
    covered = [e for m in chunks for e in m["event_ids"]]
    doubled = {e for e in covered if covered.count(e) > 1}
    assert not doubled, f"{why}: events in more than one memory: {doubled}"
    assert set(covered) == journaled, f"{why}: not in any memory: {journaled - set(covered)}"


def test_a_chunk_summarized_again_after_a_crash_replaces_its_unacknowledged_memory(
        make_config, tmp_path: Path) -> None:
    """The narrow window random kills rarely hit: the memory is stored, the journal not
    yet told, and by the restart a new event has joined the chunk (so it has a new id).
    The new memory must replace the old one, not cover the same events a second time."""
    from datetime import UTC, datetime, timedelta

    from collectors.base import Event
    from daemon.config import load_config
    from daemon.store.engine import Engine

    # a one-token answer is unusable, so each memory is the harness's own summary of the
    # events: the real model is called, and the test spends its time on the store
    cfg = load_config(make_config([], compaction={"enabled": False, "chunk_max_tokens": 1}))
    t0 = datetime(2026, 11, 20, 10, tzinfo=UTC)
    events = [Event.new(ts=t0 + timedelta(minutes=i), source="files", kind="file.modified",
                        subject=f"/src/drill/note{i}.md", title=f"note{i}.md",
                        text=f"crash drill note {i}: token zq{i:04d}x") for i in range(3)]
    engine = Engine(cfg)
    try:
        engine.index(events)
        first = engine.summarize(events[:2])  # ...and the process dies before the journal
        second = engine.summarize(events)  # the restart: the chunk grew by one event
        assert first["id"] != second["id"]
        rows = engine.store.memory_rows("level = 'chunk'", ["id", "event_ids"])
        assert [r["id"] for r in rows] == [second["id"]], rows
        assert sorted(rows[0]["event_ids"]) == sorted(e.id for e in events)
    finally:
        engine.close()
