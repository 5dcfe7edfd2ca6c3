from __future__ import annotations

import math

from models.assets import embedder_path
from models.sentence_tf import SentenceTransformerBackend


def cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_real_embedder_puts_related_texts_close() -> None:
    b = SentenceTransformerBackend(embedder_path("all-minilm-l6-v2"), name="all-minilm-l6-v2",
                                   dimensions=384, idle_seconds=0)
    assert not b.loaded
    v = b.embed(["fixing the lead scoring model's threshold",
                 "tuning the threshold of the lead-scoring classifier",
                 "a recipe for banana bread"])
    assert b.loaded and len(v) == 3 and all(len(x) == 384 for x in v)
    assert all(math.isclose(cos(x, x), 1.0, rel_tol=1e-4) for x in v)
    assert cos(v[0], v[1]) > cos(v[0], v[2]) + 0.2
    b.unload()
    assert not b.loaded
