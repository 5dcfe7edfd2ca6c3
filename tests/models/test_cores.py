"""A model's completion and an indexing batch never compute at once in one process
(models/cores.py): the completion goes first, indexing takes the cores between."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from models.assets import embedder_path
from models.cores import Cores
from models.llama_cpp import LlamaCppBackend
from models.onnx_index import OnnxIndexEmbedder


def test_a_waiting_completion_goes_before_the_next_batch() -> None:
    cores, order = Cores(), []
    batch_running, release = threading.Event(), threading.Event()

    def first_batch() -> None:
        with cores.embedding():
            batch_running.set()
            release.wait(5)
            order.append("batch 1")

    def completion() -> None:
        with cores.completion():
            order.append("completion")

    def second_batch() -> None:
        with cores.embedding():
            order.append("batch 2")

    threads = [threading.Thread(target=first_batch)]
    threads[0].start()
    assert batch_running.wait(5)
    for target in (completion, second_batch):  # both wait for the running batch
        threads.append(threading.Thread(target=target))
        threads[-1].start()
        time.sleep(0.2)
    assert order == [] and cores.completing
    release.set()
    for t in threads:
        t.join(5)
    assert order == ["batch 1", "completion", "batch 2"]
    assert not cores.completing


def test_indexing_waits_while_the_model_writes(gguf: Path, models_dir: Path) -> None:
    """Real llama.cpp and the real ONNX embedder in one process: an indexing call made
    while a completion runs computes its batches only after the completion's end."""
    llm = LlamaCppBackend(gguf, context_tokens=1024, threads=2, idle_seconds=0)
    emb = OnnxIndexEmbedder(embedder_path("all-minilm-l6-v2"), models_dir,
                            name="all-minilm-l6-v2", dimensions=384, idle_seconds=0)
    emb.embed(["load the embedder first"])
    llm.complete([{"role": "user", "content": "Say yes."}], max_tokens=2)  # loaded too
    spans: dict[str, tuple[float, float]] = {}

    def write() -> None:
        start = time.monotonic()
        llm.complete([{"role": "user", "content": "Count from one to thirty in words."}],
                     max_tokens=64, temperature=0)
        spans["completion"] = (start, time.monotonic())

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(0.3)  # the completion runs
    vectors = emb.embed([f"git commit -m 'step {i}'" for i in range(24)])
    embedded_at = time.monotonic()
    writer.join(60)
    assert len(vectors) == 24 and all(len(v) == 384 for v in vectors)
    assert embedded_at >= spans["completion"][1], "indexing computed beside a completion"
    llm.unload()
    emb.unload()
