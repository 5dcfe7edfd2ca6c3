from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from models.assets import _verified, embedder_path, gguf_path, manifest
from models.errors import ModelAssetError


def test_packaged_summarizer_is_assembled_and_matches_its_pinned_hash(gguf: Path) -> None:
    entry = manifest()["gguf"]["qwen2.5-coder-0.5b-instruct"]
    assert gguf.name == entry["file"]
    assert gguf.read_bytes()[:4] == b"GGUF"
    assert _verified(gguf, entry["sha256"])


def test_any_user_supplied_gguf_path_is_accepted(gguf: Path) -> None:
    assert gguf_path(str(gguf), Path("/nonexistent")) == gguf


def test_a_file_that_is_not_gguf_is_refused_with_a_reason(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(ModelAssetError, match="not a GGUF"):
        gguf_path(str(fake), tmp_path)
    with pytest.raises(ModelAssetError, match="neither a packaged model"):
        gguf_path(str(tmp_path / "missing.gguf"), tmp_path)


def test_a_changed_file_fails_verification_even_with_an_old_stamp(tmp_path: Path) -> None:
    f = tmp_path / "weights.bin"
    f.write_bytes(b"good weights")
    good = hashlib.sha256(b"good weights").hexdigest()
    assert _verified(f, good)  # writes a stamp
    f.write_bytes(b"evil weights")  # same size, new mtime: the stamp no longer applies
    assert not _verified(f, good)


def test_embedder_is_found_in_its_pinned_package() -> None:
    folder = embedder_path("all-minilm-l6-v2")
    assert (folder / "model.safetensors").is_file()
    with pytest.raises(ModelAssetError, match="neither a packaged model"):
        embedder_path("/nowhere/at/all")
