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
                      pipeline={"summarize": False})
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
        before = engine["reads_served"]

        hits = search()

        after = c.get("/v1/status").json()["engine"]
    assert any("marmalade" in f"{h['title']} {h['text']}" for h in hits)
    assert after["worker"] == "stopped (idle)", "the search started the worker"
    assert after["reader"].startswith("running")
    assert after["reads_served"]["reader"] == before["reader"] + 1
    assert after["reads_served"]["worker"] == before["worker"]
