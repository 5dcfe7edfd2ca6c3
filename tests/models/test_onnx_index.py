"""The worker's indexing embedder without torch: the packaged embedder's fp32 ONNX export,
batched by length, with torch's vectors; torch when the export cannot be used."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from daemon.config import load_config
from daemon.errors import ConfigError
from daemon.routing.modelcalls import indexing_embedder
from models import onnx_embed
from models.assets import embedder_path
from models.onnx_index import OnnxIndexEmbedder, length_batches
from models.sentence_tf import SentenceTransformerBackend

NAME = "all-minilm-l6-v2"
LONG = " ".join(f"step {i}: rebuilt the lance index after compaction of table events"
                for i in range(60))  # ~700 tokens: truncated at 256 by both
TEXTS = [
    "", "git status", "naïve café — ünïcödé 日本語のテキスト 🚀🚀", LONG,
    "fixing the lead scoring model's threshold", "a", LONG[:900], "x" * 3000,
    "/home/me/src/memoryd/daemon/store/worker.py modified",
    "tuning the threshold of the lead-scoring classifier", "   ", "SELECT * FROM t;\n" * 40,
]


def cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def torch_vectors() -> list[list[float]]:
    b = SentenceTransformerBackend(embedder_path(NAME), name=NAME, dimensions=384,
                                   idle_seconds=0)
    return b.embed(TEXTS)


def test_length_batches_cover_every_text_once_longest_first() -> None:
    texts = ["aa", "a", "aaaa", "", "aaa"]
    batches = length_batches(texts, 2)
    assert batches == [[2, 4], [0, 1], [3]]
    assert length_batches([], 32) == []


def test_long_texts_go_in_smaller_batches() -> None:
    """At most BATCH_TOKENS padded tokens a call: 1,000-character texts (~256 tokens)
    two at a time (the fifth with a short one), short ones eight at a time, each text
    once, longest first."""
    texts = ["x" * 1000] * 5 + ["git status"] * 10
    batches = length_batches(texts, 8, max_tokens=512)
    assert [len(b) for b in batches] == [2, 2, 2, 8, 1]
    assert sorted(i for b in batches for i in b) == list(range(len(texts)))
    assert all(len(texts[b[0]]) == max(len(texts[i]) for i in b) for b in batches)
    assert [len(b) for b in length_batches(["x" * 5000], 8)] == [1]  # never split


def test_onnx_vectors_equal_torch_in_the_callers_order(
        models_dir: Path, torch_vectors: list[list[float]]) -> None:
    e = OnnxIndexEmbedder(embedder_path(NAME), models_dir, name=NAME, dimensions=384,
                          idle_seconds=0, batch_size=5)  # three batches of mixed lengths
    assert not e.loaded
    got = e.embed(TEXTS)
    assert e.loaded and e.runtime == "onnx" and e.fallback is None
    assert len(got) == len(TEXTS) and all(len(v) == 384 for v in got)
    sims = [cos(a, b) for a, b in zip(got, torch_vectors, strict=True)]
    assert min(sims) >= 0.99999, sims
    assert e.embed([]) == [] and e.dimensions == 384
    e.unload()
    assert not e.loaded


def test_beside_a_loaded_summarizer_each_call_drops_its_session_and_its_freed_heap(
        models_dir: Path) -> None:
    e = OnnxIndexEmbedder(embedder_path(NAME), models_dir, name=NAME, dimensions=384,
                          idle_seconds=0)
    summarizer_loaded, trims = [False], []
    e.release_while = lambda: summarizer_loaded[0]
    e.after_release = lambda: trims.append(e.loaded)
    e.embed(["git status"])
    assert e.loaded and trims == []  # no summarizer: the session stays for the next batch
    summarizer_loaded[0] = True
    e.embed(["git status", LONG])
    assert not e.loaded and trims == [False]  # dropped, then its heap given back
    e.release()  # nothing loaded: nothing to give back
    assert trims == [False]


def test_an_unusable_export_falls_back_to_torch_with_a_log_line(
        tmp_path: Path, models_dir: Path, torch_vectors: list[list[float]],
        caplog: pytest.LogCaptureFixture) -> None:
    src = embedder_path(NAME)
    # a broken export (a truncated model.onnx; its stamp says complete): nothing can load it
    out = onnx_embed.export_dir(tmp_path, NAME, src)
    out.mkdir(parents=True)
    good = onnx_embed.export_dir(models_dir, NAME, src)
    for f in (onnx_embed.INT8, onnx_embed.STAMP):
        shutil.copy(good / f, out / f)
    (out / onnx_embed.FP32).write_bytes((good / onnx_embed.FP32).read_bytes()[:4096])
    e = OnnxIndexEmbedder(src, tmp_path, name=NAME, dimensions=384, idle_seconds=0)
    with caplog.at_level(logging.WARNING, logger="models.onnx_index"):
        got = e.embed(TEXTS[:4])
    assert e.runtime == "torch" and e.fallback is not None and e.fallback.loaded
    assert any("embeds with torch" in r.getMessage() for r in caplog.records)
    assert min(cos(a, b) for a, b in zip(got, torch_vectors[:4], strict=True)) >= 0.99999
    e.unload()
    assert not e.loaded


def test_the_config_picks_the_runtime(make_config, tmp_path: Path, models_dir: Path) -> None:
    assert isinstance(indexing_embedder(load_config(make_config())), OnnxIndexEmbedder)
    torch_cfg = load_config(make_config(models={"embedder_runtime": "torch"}))
    assert isinstance(indexing_embedder(torch_cfg), SentenceTransformerBackend)
    # a user's sentence-transformers folder is not exported: torch, said in the log
    folder = tmp_path / "my-embedder"
    shutil.copytree(embedder_path(NAME), folder)
    user_cfg = load_config(make_config(models={"embedder": str(folder)}))
    assert isinstance(indexing_embedder(user_cfg), SentenceTransformerBackend)
    with pytest.raises(ConfigError, match="embedder_runtime"):
        load_config(make_config(models={"embedder_runtime": "openvino"}))
