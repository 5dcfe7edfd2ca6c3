"""The embedded llama.cpp backend with the real packaged GGUF."""

from __future__ import annotations

import time
from pathlib import Path

from models.llama_cpp import LlamaCppBackend


def test_loads_lazily_answers_and_unloads_when_idle(gguf: Path) -> None:
    b = LlamaCppBackend(gguf, context_tokens=1024, threads=2, idle_seconds=2)
    assert not b.loaded
    out = b.complete([{"role": "user", "content": "What is the capital of France? "
                                                  "Answer with one word."}],
                     max_tokens=8, temperature=0)
    assert b.loaded
    assert "paris" in out.text.lower()
    assert out.completion_tokens > 0 and out.prompt_tokens > 0 and out.seconds > 0
    deadline = time.monotonic() + 10
    while b.loaded and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not b.loaded
    # and it loads again on the next call
    assert b.complete([{"role": "user", "content": "Say yes."}], max_tokens=4).text
    b.unload()
