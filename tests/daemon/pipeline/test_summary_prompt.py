"""A chunk summary's prompt fits the model's context whatever its events hold.

Found by schemathesis: pushed events of 4 KB random Unicode made a 4,279-token prompt for
a 4,096-token model, and that chunk (and every chunk after it) failed forever. Counted
with the bundled model's own tokenizer (llama.cpp, vocabulary only).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from collectors.base import Event
from daemon.pipeline.chunking import Chunk
from daemon.pipeline.summarize import prompt

CONTEXT = 4096
ANSWER = 160 + 64  # chunk_max_tokens and the chat template's own tokens


def _text(rng: random.Random, n: int) -> str:
    return "".join(chr(rng.choice([rng.randrange(0x4E00, 0x9FFF), rng.randrange(0x1F300, 0x1FAFF),
                                   rng.randrange(0x10000, 0x10FFFF), rng.randrange(0x20, 0x7F)]))
                   for _ in range(n))


def test_a_prompt_of_huge_exotic_events_fits_the_context(gguf: Path) -> None:
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    rng = random.Random(4)
    t0 = datetime(2026, 11, 26, 9, tzinfo=UTC)
    for source in ("api.editor", "files"):
        events = tuple(Event.new(ts=t0 + timedelta(seconds=i), source=source, kind="x.y",
                                 subject=_text(rng, 4096), title=_text(rng, 1000),
                                 text=_text(rng, 20_000)) for i in range(24))
        messages = prompt(Chunk(events))
        text = "\n".join(m["content"] for m in messages)
        tokens = len(llm.tokenize(text.encode("utf-8", "replace"), add_bos=False))
        assert tokens + ANSWER < CONTEXT, (source, tokens)
        assert "- " in messages[-1]["content"]  # at least one event made it in
