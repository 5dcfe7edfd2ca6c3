"""Heavy jobs wait for a quiet CPU and mains power (within limits); retention drops raw
events and keeps what was made of them."""

from __future__ import annotations

import multiprocessing as mp
import time
from datetime import UTC, datetime, timedelta

import psutil

from collectors.base import Event
from daemon.pipeline.chunking import Chunk
from daemon.pipeline.citizen import Polite, _busy, _tree_cpu, busy_reason, others_cpu_percent
from daemon.config import load_config
from daemon.store.engine import Engine
from daemon.pipeline.summarize import FALLBACK_MODEL, chunk_fields, memory_row


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_a_deferred_job_waits_its_turn_then_runs_once_deferred_too_long() -> None:
    runs: list[int] = []
    reason: list[str | None] = ["on battery"]
    job = Polite("summaries", lambda: runs.append(1), lambda: reason[0], max_defer_seconds=0.3)
    job()
    job()
    assert runs == []  # waiting
    time.sleep(0.35)
    job()
    assert runs == [1]  # waited long enough: runs anyway
    reason[0] = None
    job()
    assert runs == [1, 1]


def test_the_cpu_check_counts_memoryds_own_children_as_its_own() -> None:
    assert busy_reason(0, False) is None  # both checks off
    assert busy_reason(100.1, False) is None  # a threshold above 100 % never waits
    # a busy child (a worker summarizing) is memoryd's own CPU, subtracted from "others"
    ctx = mp.get_context("spawn")
    ours = ctx.Process(target=_spin, args=(4.0,))
    ours.start()
    try:
        time.sleep(1.0)
        before = _tree_cpu()
        time.sleep(1.0)
        spent = _tree_cpu() - before
        # the machine's whole busy time and ours, over the window `others_cpu_percent` samples
        t0, busy0, ours0 = time.monotonic(), _busy(), _tree_cpu()
        share = others_cpu_percent(1.0)
        window = (time.monotonic() - t0) * (psutil.cpu_count() or 1)
        total = (_busy() - busy0) / window * 100
        ours_share = (_tree_cpu() - ours0) / window * 100
    finally:
        ours.join()
    assert spent >= 0.1  # this process slept: the CPU is the child's, and it counts
    assert 0.0 <= share <= 100.0
    # the spinning child is subtracted: what is left for "others" is short of the whole
    # machine's busy share by (about) the child's share
    assert ours_share > 5.0, f"the child hardly ran ({ours_share:.1f} %); cannot judge"
    assert total - share >= 0.5 * ours_share, (total, share, ours_share)


def test_retention_drops_old_raw_events_and_keeps_their_memories(make_config) -> None:
    engine = Engine(load_config(make_config()))
    try:
        now = datetime.now(UTC)
        old = Event.new(ts=now - timedelta(days=40), source="shell", kind="shell.command",
                        subject="make release VERSION=1.4.2", text="make release VERSION=1.4.2")
        new = Event.new(ts=now - timedelta(days=1), source="shell", kind="shell.command",
                        subject="make release VERSION=1.5.0", text="make release VERSION=1.5.0")
        engine.index([old, new])
        chunk = Chunk((old,))
        engine.store.upsert_memories([memory_row(chunk, chunk_fields(chunk, ""), FALLBACK_MODEL,
                                                 engine.models.embed(["release"])[0])])
        assert engine.prune_events(0) == 0  # 0 keeps everything
        assert engine.prune_events(30) == 1
        assert engine.store.counts() == {"events": 1, "memories": 1}
        assert engine.store.text_search("events", "1.5.0", 3)[0].id == new.id
        [mem] = engine.store.memory_rows(f"id = '{chunk.id}'")
        assert "make release VERSION=1.4.2" in mem["text"]
    finally:
        engine.close()
