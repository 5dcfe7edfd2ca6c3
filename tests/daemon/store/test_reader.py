"""The resident reader: searches after the worker idled out are answered without it, by a
process with a torch-free (ONNX) query embedder whose vectors match the stored ones."""

from __future__ import annotations

import math
import time
from pathlib import Path

from daemon.config import load_config
from tests.conftest import start_daemon  # noqa: F401 (fixture)

PHRASE = "the marmalade ledger reconciles on thursdays"


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b))


def test_onnx_query_vectors_match_the_stored_torch_ones(make_config) -> None:
    from daemon.store.reader import Reader
    from models.sentence_tf import SentenceTransformerBackend

    cfg = load_config(make_config())
    reader = Reader(cfg)  # exports the packaged model to ONNX when missing (once a machine)
    texts = ["git status", PHRASE,
             "https://docs.python.org/3/library/sqlite3.html sqlite3 — DB-API 2.0 interface "
             "for SQLite databases " * 3]
    onnx = reader.query_embed(texts)  # one padded batch: short and long texts together
    torch = SentenceTransformerBackend(reader.models.embedder.folder, name="t").embed(texts)
    for a, b in zip(onnx, torch, strict=True):
        assert _cos(a, b) > 0.999  # fp32 ONNX: the same vectors as torch's
    alone = reader.query_embed([texts[0]])[0]  # padding changes nothing
    assert _cos(alone, onnx[0]) > 0.9999


def test_a_search_after_the_worker_idled_out_is_served_by_the_reader(
        make_config, start_daemon, tmp_path: Path) -> None:  # noqa: F811
    root = tmp_path / "files"
    root.mkdir()
    (root / "ledger.txt").write_text(f"Note: {PHRASE}.\n")
    cfg = make_config([root], models={"idle_unload_seconds": 3},
                      pipeline={"summarize": False}, search={"reader_shed_seconds": 2})
    d = start_daemon(cfg)
    with d.unix(headers=d.auth()) as c:
        def search() -> list[dict]:
            return c.get("/v1/memory/search", params={"q": "marmalade ledger"}).json()[
                "results"]

        deadline = time.monotonic() + 180
        while not any("marmalade" in f"{h['title']} {h['text']}" for h in search()):
            assert time.monotonic() < deadline, "the file never became searchable"
            time.sleep(1)
        engine = c.get("/v1/status").json()["engine"]
        while engine["worker"] != "stopped (idle)":
            assert time.monotonic() < deadline, f"the worker never idled out: {engine}"
            time.sleep(1)
            engine = c.get("/v1/status").json()["engine"]
        while not engine.get("reader_memory", {}).get("sheds"):  # idle: it gave memory back
            assert time.monotonic() < deadline, f"the reader never shed its pages: {engine}"
            time.sleep(1)
            engine = c.get("/v1/status").json()["engine"]
        before = engine["reads_served"]

        hits = search()

        after = c.get("/v1/status").json()["engine"]
    assert any("marmalade" in f"{h['title']} {h['text']}" for h in hits)
    assert after["worker"] == "stopped (idle)", "the search started the worker"
    assert after["reader"].startswith("running")
    assert after["reads_served"]["reader"] == before["reader"] + 1
    assert after["reads_served"]["worker"] == before["worker"]
    assert after["reader_memory"]["last_shed_mb"] > 20  # native code and mapped weights
    assert isinstance(after["reader_memory"]["store_cache_mb"], float)  # LanceDB caches, MB


QUERIES = ["marmalade ledger", "which pier does the ferry leave from", "sqlite database",
           "where did I save the budget", "git status in the project", "python docs",
           "what did I read about tokens", "thursday"]


def test_the_reader_answers_as_the_worker_does_on_a_real_store(make_config) -> None:
    """The same hits in the same order with the same scores: the reader's mapped fp32
    ONNX query vectors (weights read from their file, no prepacking) rank the stored
    torch vectors as the worker's torch query vectors do."""
    from datetime import UTC, datetime, timedelta

    from collectors.base import Event
    from daemon.pipeline import summarize
    from daemon.pipeline.chunking import Chunk
    from daemon.store.engine import Engine
    from daemon.store.reader import Reader

    cfg = load_config(make_config())
    lines = [ln.strip() for ln in (Path(__file__).parents[3] / "README.md").read_text()
             .splitlines() if len(ln.strip()) > 40][:80]
    lines += [f"Note: {PHRASE}.", "the ferry leaves pier 7 at noon", "budget.xlsx saved"]
    start = datetime(2025, 3, 1, tzinfo=UTC)
    events = [Event.new(ts=start + timedelta(minutes=7 * i), source="files",
                        kind="file.modified", subject=f"/home/u/notes/n{i}.md",
                        title=f"n{i}.md", text=text) for i, text in enumerate(lines)]
    worker = Engine(cfg)
    worker.index(events)
    # memories too: one per 4 events, their text a summary-like line, torch vectors
    rows = []
    for i in range(0, len(events), 4):
        chunk = Chunk(tuple(events[i:i + 4]))
        text = f"Worked on {', '.join(e.title for e in chunk.events)}: {chunk.events[0].text}"
        row = summarize.memory_row(chunk, text, "test-notes", [])
        row["vector"] = worker.models.embed([f"{row['title']}\n{row['text']}"])[0]
        rows.append(row)
    worker.store.upsert_memories(rows)
    reader = Reader(cfg)
    assert reader.mapped_files, "the reader's weights are not mapped from their file"
    now = start + timedelta(days=3)
    tables = set()
    for q in QUERIES:
        want = [(h.id, h.table, h.score) for h in worker.search(q, k=10, now=now)]
        got = [(h.id, h.table, h.score) for h in reader.search(q, k=10, now=now)]
        assert got == want, q
        tables |= {t for _, t, _ in got}
    assert tables == {"events", "memories"}, tables  # both tables were compared
    assert reader.counts() == worker.counts() and reader.counts()["memories"] == len(rows)
    reader.close()
    worker.close()


def test_the_mapped_weights_give_the_in_memory_vectors(make_config) -> None:
    from models import onnx_embed
    from models.assets import embedder_path

    cfg = load_config(make_config())
    src = embedder_path(cfg.models.embedder)
    out = onnx_embed.ensure_export(src, onnx_embed.export_dir(cfg.models_path,
                                                              cfg.models.embedder, src))
    mapped = onnx_embed.OnnxEmbedder(onnx_embed.ensure_mapped(out), src, name="m",
                                     mapped=True)
    plain = onnx_embed.OnnxEmbedder(out / onnx_embed.FP32, src, name="p")
    texts = [PHRASE, "git status", *QUERIES]
    for a, b in zip(mapped.embed(texts), plain.embed(texts), strict=True):
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-6
    assert (out / (onnx_embed.FP32_MAPPED + ".data")).stat().st_size > 80_000_000
    assert (out / onnx_embed.FP32_MAPPED).stat().st_size < 1_000_000  # the graph only


def _running(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _reader_pid(engine: dict) -> int:
    assert engine["reader"].startswith("running (pid "), engine
    return int(engine["reader"].split("pid ")[1].rstrip(")"))


def test_a_killed_reader_is_replaced_and_it_leaves_with_the_daemon(
        make_config, start_daemon, tmp_path: Path) -> None:  # noqa: F811
    """The reader killed (OOM, a crash in native code): the next search still finds the
    note, from a new reader; and a stopped daemon leaves no reader behind."""
    import os
    import signal

    root = tmp_path / "files"
    root.mkdir()
    (root / "ledger.txt").write_text(f"Note: {PHRASE}.\n")
    d = start_daemon(make_config([root], pipeline={"summarize": False}))
    with d.unix(headers=d.auth()) as c:
        def found() -> bool:
            r = c.get("/v1/memory/search", params={"q": "marmalade ledger"})
            return r.status_code == 200 and any(
                "marmalade" in f"{h['title']} {h['text']}" for h in r.json()["results"])

        deadline = time.monotonic() + 180
        while not found():
            assert time.monotonic() < deadline, "the file never became searchable"
            time.sleep(1)
        first = _reader_pid(c.get("/v1/status").json()["engine"])
        os.kill(first, signal.SIGKILL)
        # gone for the daemon too: a killed process's threads can outlive its main thread
        # (psutil says zombie) and keep its socket open a while, so a read sent then is
        # lost with it and answered by the worker instead
        while _running(first) or c.get("/v1/status").json()["engine"]["reader"] == (
                f"running (pid {first})"):
            assert time.monotonic() < deadline, "the killed reader never went"
            time.sleep(0.1)
        assert found(), "a search failed after the reader was killed"
        engine = c.get("/v1/status").json()["engine"]
        # a kill during a read in flight (the worker indexes fast with ONNX, so the first
        # searches can still be running) fails that read over to the worker, and the
        # next read starts the new reader
        while engine["reader"] == "stopped":
            assert time.monotonic() < deadline, "no new reader after the kill"
            assert found(), "a search failed after the reader was killed"
            engine = c.get("/v1/status").json()["engine"]
        second = _reader_pid(engine)
    assert second != first
    d.proc.send_signal(signal.SIGTERM)
    d.proc.wait(timeout=60)
    deadline = time.monotonic() + 15
    while _running(second):
        assert time.monotonic() < deadline, "the reader outlived the daemon"
        time.sleep(0.2)


def test_the_reader_and_the_worker_starting_together_write_the_mapped_copy_once(
        onnx_export: tuple[Path, Path], monkeypatch) -> None:
    """Both processes start at once on a models dir without the mapped copy: one writes
    it, the other waits and maps that same file (a second write would replace the file
    the first already mapped, and its pages would be held twice)."""
    import subprocess
    import threading

    from models import onnx_embed

    _, out = onnx_export
    writes: list[list[str]] = []
    real_run = subprocess.run

    def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        writes.append(cmd)  # the real writer still runs
        return real_run(cmd, **kw)  # type: ignore[call-overload]

    monkeypatch.setattr(onnx_embed.subprocess, "run", run)
    seen: list[int] = []

    def start() -> None:
        mapped = onnx_embed.ensure_mapped(out)
        seen.append(mapped.with_name(mapped.name + ".data").stat().st_ino)

    both = [threading.Thread(target=start) for _ in range(2)]
    for t in both:
        t.start()
    for t in both:
        t.join(timeout=300)
    assert len(writes) == 1 and "--mapped" in writes[0]
    assert len(seen) == 2 and seen[0] == seen[1] == (
        out / (onnx_embed.FP32_MAPPED + ".data")).stat().st_ino
