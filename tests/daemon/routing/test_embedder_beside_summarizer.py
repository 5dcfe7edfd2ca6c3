"""The worker's two models never sit in its memory together: while the embedded summarizer
is loaded, the ONNX indexing embedder is dropped before each completion and after each
embedding call (its packed weights map back from the page cache in ~0.1 s), with the same
vectors. Real llama.cpp (the packaged 0.5B) and the real ONNX export, in one process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daemon.config import load_config
from daemon.routing.modelcalls import ModelCalls
from models.onnx_index import OnnxIndexEmbedder

TEXTS = ["git status", "opened the lance compaction docs", "fixed the lead scoring threshold"]


def weight_mappings() -> int:
    """Mappings of ONNX weight files in this process (other tests' embedders may hold
    some: only the change counts)."""
    return sum(".onnx.data" in line for line in Path("/proc/self/maps").read_text().splitlines())


def test_the_embedder_leaves_memory_while_the_summarizer_is_loaded(make_config: Any) -> None:
    calls = ModelCalls(load_config(make_config()))
    assert isinstance(calls.embedder, OnnxIndexEmbedder)
    name, summarizer = calls.cfg.models.embedder, calls.cfg.models.summarizer
    others = weight_mappings()
    alone = calls.local_embed(name, TEXTS)
    # no summarizer: the embedder stays for the next call, its weights mapped
    assert calls.embedder.loaded and weight_mappings() > others

    calls.local_complete(summarizer, [{"role": "user", "content": "Say yes."}],
                         {"max_tokens": 2})
    assert calls.chat_loaded()
    assert not calls.embedder.loaded  # dropped before the model ran, weights unmapped
    assert weight_mappings() == others

    beside = calls.local_embed(name, TEXTS)
    assert beside == alone  # the same session, loaded again from the same weights
    assert not calls.embedder.loaded and weight_mappings() == others

    calls.unload()  # the summarizer idled out: the embedder stays between calls again
    assert not calls.chat_loaded()
    assert calls.local_embed(name, TEXTS) == alone and calls.embedder.loaded
    calls.unload()
