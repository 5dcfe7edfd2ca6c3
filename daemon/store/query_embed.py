"""A query embedder without torch for processes that only read: the packaged embedder's
ONNX export (models/onnx_embed.py), when there is one.

`memoryd search` and `memoryd context` without a running daemon, and the daemon's
resident reader, embed one short query per call. Loading torch and sentence-transformers
for it takes seconds (8.5 s quiet, tens on a busy box); the export answers in well under
one, with the stored vectors' own numbers in fp32 (`[search] query_embedder = "onnx"`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from daemon.config import Config
from models.errors import ModelError

log = logging.getLogger(__name__)
Embed = Callable[[list[str]], list[list[float]]]


def packaged_export(cfg: Config) -> tuple[Path, Path] | None:
    """The packaged embedder's folder and its ONNX export's folder (which may not exist
    yet); None for an embedder that is not a packaged one (a user's folder)."""
    from models import onnx_embed
    from models.assets import embedder_path, manifest

    name = cfg.models.embedder
    if name not in manifest()["embedder"]:
        return None
    src = embedder_path(name)
    return src, onnx_embed.export_dir(cfg.models_path, name, src)


def onnx_query_embedder(cfg: Config, export: bool = False) -> Embed | None:
    """The ONNX query embedder of `cfg`'s embedder, loaded; None when the config asks for
    the router's (torch) embedder, the embedder is not a packaged one, or there is no
    export yet and `export` is false (the export takes a minute and torch)."""
    mode = cfg.search.query_embedder
    found = packaged_export(cfg) if mode != "router" else None
    if found is None:
        return None
    from models import onnx_embed

    src, out = found
    file = out / (onnx_embed.FP32 if mode == "onnx" else onnx_embed.INT8)
    if not export and not (file.is_file() and (out / onnx_embed.STAMP).is_file()):
        return None
    embedder = onnx_embed.OnnxEmbedder(file, src, name=cfg.models.embedder, threads=1)
    try:
        if export:
            onnx_embed.ensure_export(src, out)
        embedder.load()
    except ModelError as exc:  # the caller embeds with torch instead
        log.warning("no ONNX query embedder (%s); queries are embedded with torch", exc)
        return None
    return embedder.embed


def prepare(cfg: Config) -> None:
    """Make the export now if a reader or the worker will want it (`ingest --once` ends
    with this, so the searches after it start in a second)."""
    reader = cfg.search.resident_reader and cfg.search.query_embedder != "router"
    found = packaged_export(cfg) if reader or cfg.models.embedder_runtime == "onnx" else None
    if found is None:
        return
    from models import onnx_embed

    try:
        onnx_embed.ensure_export(*found)
    except ModelError as exc:
        log.warning("%s; searches embed queries with torch until it works", exc)
