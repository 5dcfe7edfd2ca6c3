"""The fp32 embedder with its weights prepacked for this CPU and mapped from a file.

onnxruntime rearranges ("prepacks") each weight matrix for its matrix-multiply kernel
when a session loads. In memory, that copy is ~90 MB of the process's own memory per
process; with the weights mapped from their file and prepacking off (FP32_MAPPED in
models/onnx_embed.py) the processes share page cache instead, but every call packs
again: a query took 11.0-12.6 ms instead of 6.4-6.9 (bench/README.md, "The query
embedder with its weights packed for this CPU"). onnxruntime can save the packed weights
themselves into the external data file of an optimized copy of the model
(`session.save_external_prepacked_constant_initializers`); a session on that copy maps
them and packs nothing. So a query costs what the in-memory model costs, and the memory
stays page cache, shared and sheddable.

The packed layout belongs to the CPU and onnxruntime that made it, so the copy is stamped
with both and made again when either changes; and a loaded copy must embed a probe
sentence as the plain model did when the copy was made, or it is not used.
The copy is made once per machine, in a child process (`python -m models.onnx_prepacked
SRC OUT`), at install (`memoryd models`) or on first use.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import sys
from pathlib import Path

from models import onnx_embed
from models.errors import ModelError

log = logging.getLogger(__name__)
PREPACKED = "model_prepacked.onnx"
STAMP = "prepacked.json"  # written last: its presence means the copy is complete
PROBE = "memoryd checks that its prepacked embedder gives the plain model's numbers"
TOLERANCE = 1e-5  # largest difference allowed per dimension (seen: 0, bit for bit)


def cpu_identity() -> str:
    """What the packed layout depends on: onnxruntime's version and this CPU's model and
    instruction sets (a copy made elsewhere, or before an upgrade, is made again)."""
    import onnxruntime as ort

    cpu = platform.processor()
    try:
        text = Path("/proc/cpuinfo").read_text()
        first = text.split("\n\n", 1)[0]
        cpu = "\n".join(line for line in first.splitlines()
                        if line.startswith(("vendor_id", "model name", "flags")))
    except OSError:
        pass
    key = f"{ort.__version__}|{platform.machine()}|{cpu}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _stamp(out: Path) -> dict[str, object] | None:
    try:
        got = json.loads((out / STAMP).read_text())
    except (OSError, ValueError):
        return None
    return got if isinstance(got, dict) else None


def current(out: Path) -> bool:
    """Whether `out` holds a complete copy made for this CPU and onnxruntime."""
    stamp = _stamp(out)
    return (stamp is not None and stamp.get("cpu") == cpu_identity()
            and (out / PREPACKED).is_file() and (out / (PREPACKED + ".data")).is_file())


def write(src: Path, out: Path) -> None:
    """Save the optimized graph of FP32 with its packed weights beside it, and the stamp:
    this CPU, and the plain model's vector of PROBE (checked at each load)."""
    import onnxruntime as ort

    tmp = out / f".prepacked-{os.getpid()}"
    tmp.mkdir(exist_ok=True)
    opts = ort.SessionOptions()
    # no layout changes (NCHWc and the like): only the fusions a transformer needs
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(tmp / PREPACKED)
    for key, value in (("session.optimized_model_external_initializers_file_name",
                        PREPACKED + ".data"),
                       ("session.optimized_model_external_initializers_min_size_in_bytes",
                        "1024"),
                       ("session.save_external_prepacked_constant_initializers", "1")):
        opts.add_session_config_entry(key, value)
    ort.InferenceSession(str(out / onnx_embed.FP32), opts, providers=["CPUExecutionProvider"])
    plain = onnx_embed.OnnxEmbedder(out / onnx_embed.FP32, src, name="probe", threads=1)
    probe = plain.embed([PROBE])[0]
    os.replace(tmp / (PREPACKED + ".data"), out / (PREPACKED + ".data"))
    os.replace(tmp / PREPACKED, out / PREPACKED)
    shutil.rmtree(tmp, ignore_errors=True)
    stamp = out / (STAMP + ".tmp")
    stamp.write_text(json.dumps({"cpu": cpu_identity(), "probe": probe}))
    os.replace(stamp, out / STAMP)


def ensure(src: Path, out: Path, timeout: float = 300.0) -> Path:
    """`out`/PREPACKED, made now in a child process when missing or made for another CPU
    or onnxruntime. Return its path."""
    onnx_embed.made_once(out, lambda: current(out),
                         ["models.onnx_prepacked", str(src), str(out)],
                         f"packing the embedder's weights in {out}", timeout)
    return out / PREPACKED


def check(embedder: onnx_embed.OnnxEmbedder, out: Path) -> None:
    """Raise ModelError unless `embedder` (loaded from the copy) gives the stamp's vector
    of PROBE: a packed layout this CPU does not read as its maker did is never used."""
    stamp = _stamp(out) or {}
    want = stamp.get("probe")
    got = embedder.embed([PROBE])[0]
    if not isinstance(want, list) or len(want) != len(got) or max(
            abs(a - b) for a, b in zip(got, want, strict=True)) > TOLERANCE:
        raise ModelError(f"the prepacked embedder in {out} does not give the plain model's "
                         "vectors on this machine; it is not used (delete "
                         f"{out / STAMP} to make it again)")


def load(src: Path, out: Path, *, name: str, threads: int, spin: bool = True
         ) -> tuple[onnx_embed.OnnxEmbedder, frozenset[str]]:
    """The fastest fp32 embedder whose weights are page cache: the prepacked copy, else
    the mapped one (slower: it packs on every call), else fp32 in this process's memory.
    Also the weight files it maps read-write without writing (memtrim may drop them)."""
    for kind in ("prepacked", "mapped"):
        try:
            file = ensure(src, out) if kind == "prepacked" else onnx_embed.ensure_mapped(out)
            embedder = onnx_embed.OnnxEmbedder(file, src, name=name, threads=threads,
                                               mapped=kind == "mapped", spin=spin,
                                               optimized=kind == "prepacked")
            embedder.load()
            if kind == "prepacked":
                check(embedder, out)
            data = file.with_name(file.name + ".data")
            return embedder, frozenset({str(data.resolve())})
        except ModelError as exc:
            log.warning("the %s embedder %s is not used (%s)", kind, name, exc)
    log.warning("the embedder %s keeps its fp32 weights in this process's memory", name)
    embedder = onnx_embed.OnnxEmbedder(out / onnx_embed.FP32, src, name=name, threads=threads,
                                       spin=spin)
    embedder.load()
    return embedder, frozenset()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m models.onnx_prepacked SENTENCE_TRANSFORMERS_FOLDER OUT_DIR")
    write(Path(sys.argv[1]), Path(sys.argv[2]))
