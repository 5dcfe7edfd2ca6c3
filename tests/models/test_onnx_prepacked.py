"""The prepacked embedder: the plain fp32 model's vectors from weights packed for this CPU
and mapped from a file; made again for another CPU; never used when it embeds wrongly."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from models import onnx_embed, onnx_prepacked
from models.errors import ModelError

TEXTS = ["which pier does the quokka ferry leave from", "git status",
         "https://docs.python.org/3/library/sqlite3.html sqlite3 DB-API 2.0 " * 8]


def _max_diff(a: list[list[float]], b: list[list[float]]) -> float:
    return max(abs(x - y) for u, v in zip(a, b, strict=True) for x, y in zip(u, v, strict=True))


def test_the_prepacked_weights_give_the_plain_models_vectors_from_a_mapped_file(
        onnx_export: tuple[Path, Path]) -> None:
    src, out = onnx_export
    embedder, mapped = onnx_prepacked.load(src, out, name="e", threads=2)
    assert embedder.onnx_file == out / onnx_prepacked.PREPACKED
    assert mapped == {str((out / (onnx_prepacked.PREPACKED + ".data")).resolve())}
    plain = onnx_embed.OnnxEmbedder(out / onnx_embed.FP32, src, name="p")
    assert _max_diff(embedder.embed(TEXTS), plain.embed(TEXTS)) < 1e-5


def test_a_copy_made_for_another_cpu_is_made_again(onnx_export: tuple[Path, Path]) -> None:
    src, out = onnx_export
    onnx_prepacked.ensure(src, out)
    stamp = json.loads((out / onnx_prepacked.STAMP).read_text())
    (out / onnx_prepacked.STAMP).write_text(json.dumps({**stamp, "cpu": "another cpu"}))
    assert not onnx_prepacked.current(out)

    onnx_prepacked.ensure(src, out)

    assert json.loads((out / onnx_prepacked.STAMP).read_text())["cpu"] == \
        onnx_prepacked.cpu_identity()


def test_a_copy_that_embeds_wrongly_is_not_used(onnx_export: tuple[Path, Path],
                                                caplog: pytest.LogCaptureFixture) -> None:
    src, out = onnx_export
    onnx_prepacked.ensure(src, out)
    stamp = json.loads((out / onnx_prepacked.STAMP).read_text())
    wrong = [x + 0.01 for x in stamp["probe"]]  # as if this CPU read the packing otherwise
    (out / onnx_prepacked.STAMP).write_text(json.dumps({**stamp, "probe": wrong}))

    with caplog.at_level(logging.WARNING):
        embedder, mapped = onnx_prepacked.load(src, out, name="e", threads=1)

    assert embedder.onnx_file == out / onnx_embed.FP32_MAPPED  # the slower mapped copy
    assert mapped == {str((out / (onnx_embed.FP32_MAPPED + ".data")).resolve())}
    assert "does not give the plain model's vectors" in caplog.text
    plain = onnx_embed.OnnxEmbedder(out / onnx_embed.FP32, src, name="p")
    assert _max_diff(embedder.embed(TEXTS), plain.embed(TEXTS)) < 1e-5


def test_an_export_dir_that_cannot_be_written_is_a_model_error(
        onnx_export: tuple[Path, Path], tmp_path: Path) -> None:
    """The reader and the worker catch ModelError and fall back (the mapped copy, else
    torch); an OSError from the lock would have ended the process instead."""
    src, _ = onnx_export
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the models dir should be")
    out = blocker / "onnx" / "export"
    for make in (lambda: onnx_prepacked.ensure(src, out), lambda: onnx_embed.ensure_mapped(out)):
        with pytest.raises(ModelError, match="cannot write in"):
            make()
