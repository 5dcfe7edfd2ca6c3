"""Model files: find them in pinned PyPI packages, assemble them once, check their hashes.

Given a model spec from the config (a manifest name such as
"qwen2.5-coder-0.5b-instruct", or a path to any GGUF file / sentence-transformers
folder), `gguf_path` and `embedder_path` return a local path that is safe to load, or
raise ModelAssetError saying which package or file to fix. Packaged GGUF files are split
across several wheels; they are concatenated in order into the models dir once, checked
against the pinned SHA-256, and a stamp file spares later starts the re-hash.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import logging
import os
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from models.errors import ModelAssetError

log = logging.getLogger(__name__)
MANIFEST = Path(__file__).with_name("manifest.toml")
GGUF_MAGIC = b"GGUF"


@cache
def manifest() -> dict[str, Any]:
    with MANIFEST.open("rb") as fh:
        return tomllib.load(fh)


@dataclass(frozen=True)
class Stamp:
    sha256: str
    size: int
    mtime_ns: int


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _verified(path: Path, sha256: str) -> bool:
    """True if `path` matches `sha256`: by a stamp when size and mtime are unchanged."""
    st = path.stat()
    stamp = _stamp_path(path)
    try:
        s = Stamp(**json.loads(stamp.read_text()))
        if (s.sha256, s.size, s.mtime_ns) == (sha256, st.st_size, st.st_mtime_ns):
            return True
    except (OSError, ValueError, TypeError):
        pass
    if _sha256(path) != sha256:
        return False
    try:
        stamp.write_text(json.dumps(Stamp(sha256, st.st_size, st.st_mtime_ns).__dict__))
    except OSError:
        log.warning("could not write %s; the model will be re-hashed on every load", stamp)
    return True


def _distribution(name: str, version: str) -> md.Distribution:
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        raise ModelAssetError(
            f"the model package {name}=={version} is not installed; run install.sh, or "
            f"`pip install {name}=={version}` in memoryd's environment") from None
    if dist.version != version:
        raise ModelAssetError(
            f"{name} is version {dist.version}, but memoryd's manifest pins {version}; "
            f"run `pip install {name}=={version}` in memoryd's environment")
    return dist


def _part_file(dist: md.Distribution, name: str) -> Path:
    bins = [f for f in (dist.files or []) if str(f).endswith(".bin") and "/data/" in str(f)]
    if len(bins) != 1:
        raise ModelAssetError(f"{name} should ship exactly one data/*.bin file, found {len(bins)}")
    return Path(str(dist.locate_file(bins[0])))


def assemble_gguf(name: str, models_dir: Path) -> Path:
    """Concatenate a packaged GGUF's parts into `models_dir` (once) and verify it."""
    entry = manifest()["gguf"][name]
    target = models_dir / entry["file"]
    if target.exists() and _verified(target, entry["sha256"]):
        return target
    parts = [_part_file(_distribution(p, entry["version"]), p) for p in entry["parts"]]
    models_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    log.info("assembling %s from %d packaged parts into %s", name, len(parts), target)
    h = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as fh:
                    while chunk := fh.read(1 << 22):
                        h.update(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest() != entry["sha256"]:
            raise ModelAssetError(
                f"{name}: the assembled file's SHA-256 is {h.hexdigest()}, expected "
                f"{entry['sha256']}; reinstall its packages ({entry['parts'][0]} …)")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _verified(target, entry["sha256"])
    return target


def gguf_path(spec: str, models_dir: Path) -> Path:
    """Return a loadable GGUF for a manifest name or a user-supplied path."""
    if spec in manifest()["gguf"]:
        return assemble_gguf(spec, models_dir)
    path = Path(spec).expanduser()
    if not path.is_file():
        known = ", ".join(manifest()["gguf"])
        raise ModelAssetError(f"summarizer {spec!r} is neither a packaged model ({known}) "
                              "nor an existing GGUF file; fix [models] summarizer")
    with path.open("rb") as fh:
        if fh.read(4) != GGUF_MAGIC:
            raise ModelAssetError(f"{path} is not a GGUF file (bad magic); point "
                                  "[models] summarizer at a .gguf model")
    return path


def embedder_path(spec: str) -> Path:
    """Return a sentence-transformers folder for a manifest name or a user-supplied path."""
    entry = manifest()["embedder"].get(spec)
    if entry is None:
        path = Path(spec).expanduser()
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise ModelAssetError(f"embedder {spec!r} is neither a packaged model "
                                  f"({', '.join(manifest()['embedder'])}) nor a "
                                  "sentence-transformers folder; fix [models] embedder")
        return path
    dist = _distribution(entry["package"], entry["version"])
    folder = Path(str(dist.locate_file(entry["folder"])))
    weights = folder / entry["weights"]
    if not weights.is_file():
        raise ModelAssetError(f"{entry['package']} has no {entry['weights']}; reinstall it")
    if not _verified(weights, entry["sha256"]):
        raise ModelAssetError(f"{weights} does not match the pinned SHA-256; reinstall "
                              f"{entry['package']}=={entry['version']}")
    return folder


def embedder_dimensions(spec: str) -> int | None:
    entry = manifest()["embedder"].get(spec)
    return int(entry["dimensions"]) if entry else None
