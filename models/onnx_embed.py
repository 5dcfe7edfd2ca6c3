"""Embeddings without torch: a packaged sentence-transformers model exported once to ONNX
(optionally int8-quantized) and run by onnxruntime with the model's own tokenizer.

A process that only needs to embed a query (daemon/store/reader.py) loads this in a
fraction of a second and ~60 MB, where torch and sentence-transformers take seconds and
hundreds of MB. The export needs torch and runs once, in its own process
(`python -m models.onnx_embed SRC OUT`), at install or on first use.

The vectors follow the sentence-transformers pipeline of the packaged model
(Transformer → mean pooling → L2 normalisation), so they match what
`SentenceTransformerBackend` writes: cosine 1.0000 in fp32, mean 0.991 (min 0.98) int8
(`bench/embedder_backends.py` measures both). The stored vectors stay torch's, so the
reader's default is fp32.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from models.base import Profile
from models.errors import ModelError

FP32 = "model.onnx"
INT8 = "model_qint8.onnx"
# FP32's graph with its weights in a file of their own beside it: onnxruntime maps that
# file instead of copying it, so a resident process holds the weights as page cache
# (file-backed, shared, reclaimable) rather than ~90 MB of its own memory.
FP32_MAPPED = "model_mapped.onnx"
STAMP = "source.json"
MAX_TOKENS = 256  # tokens of a text the embedder reads (all-MiniLM-L6-v2's limit)
EXPORT_VERSION = "2"  # bump when the export or its quantization changes


class OnnxEmbedder:
    """Mean-pooled, normalised sentence embeddings from an exported ONNX file."""

    def __init__(self, onnx_file: Path, tokenizer_dir: Path, *, name: str,
                 max_tokens: int = MAX_TOKENS, threads: int = 1, mapped: bool = False,
                 spin: bool = True, optimized: bool = False) -> None:
        self.onnx_file = onnx_file
        # mapped: the weights stay in their mapped file (no prepacked copies); vectors
        # differ from the prepacked ones by float rounding (max 1.4e-7, cosine 0.9999998)
        self.mapped = mapped
        self.tokenizer_dir = tokenizer_dir
        self.max_tokens = max_tokens
        self.threads = threads
        # spin False: the intra-op threads sleep between calls instead of spinning for
        # more work (ONNX Runtime's default), which a query embedder would burn a core on
        self.spin = spin
        # optimized: the file is a graph onnxruntime already optimized for this machine
        # (models/onnx_prepacked.py), loaded as it is
        self.optimized = optimized
        self.profile = Profile(name=name, context_tokens=max_tokens, privacy="local",
                               skills=("embed",))
        self._session: Any = None
        self._tokenizer: Any = None
        self._inputs: set[str] = set()
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._session is not None

    def load(self) -> None:
        with self._lock:
            if self._session is None:
                self._load_locked()

    def _load_locked(self) -> None:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ModelError("onnxruntime is not installed; run install.sh") from exc
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads or (os.cpu_count() or 1)
        opts.inter_op_num_threads = 1
        opts.enable_cpu_mem_arena = False  # a query embedder stays small between calls
        if self.mapped:
            opts.add_session_config_entry("session.disable_prepacking", "1")
        if not self.spin:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if self.optimized:
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            session = ort.InferenceSession(str(self.onnx_file), opts,
                                           providers=["CPUExecutionProvider"])
            tok = Tokenizer.from_file(str(self.tokenizer_dir / "tokenizer.json"))
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"could not load the ONNX embedder {self.onnx_file}: {exc}; "
                             "delete it and it is exported again") from exc
        tok.enable_truncation(max_length=self.max_tokens)
        tok.enable_padding(pad_id=0, pad_token="[PAD]")
        self._inputs = {i.name for i in session.get_inputs()}
        self._session, self._tokenizer = session, tok

    def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        import numpy as np

        with self._lock:
            if self._session is None:
                self._load_locked()
            enc = self._tokenizer.encode_batch(texts)
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            hidden = self._session.run(None, feed)[0]
        m = mask[..., None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32).tolist()

    def unload(self) -> None:
        with self._lock:
            self._session = None
            self._tokenizer = None


def source_digest(src: Path) -> str:
    """What an export was made from: the weights' SHA-256 (first 16 hex digits)."""
    weights = next((src / n for n in ("model.safetensors", "pytorch_model.bin")
                    if (src / n).is_file()), None)
    if weights is None:
        raise ModelError(f"{src} has no model.safetensors; reinstall the embedder package")
    h = hashlib.sha256()
    with weights.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def export_dir(models_dir: Path, name: str, src: Path) -> Path:
    return models_dir / "onnx" / f"{name}-{source_digest(src)}-{EXPORT_VERSION}"


@contextlib.contextmanager
def one_writer(out: Path) -> Iterator[None]:
    """Held while `out`'s files are written: the reader and the worker start together and
    would each export, and the later one's file would replace the one the earlier one
    already mapped (its pages then held twice, once as a deleted file's)."""
    path = out.parent / f".{out.name}.lock"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path, "a")  # closed by the `with` below, after the unlock
    except OSError as exc:  # a read-only or full models dir: the caller falls back
        raise ModelError(f"cannot write in {out.parent} ({exc}); the embedder's files "
                         "there cannot be made") from exc
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the writer's own timeout bounds the wait
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def made_once(out: Path, done: Callable[[], bool], args: list[str], what: str,
              timeout: float, again: str = "") -> None:
    """Unless `done()`, run `python -m <args>` to make it, one process at a time (the
    others wait, then find it done); ModelError saying `what` failed, and why, if not."""
    if done():
        return
    with one_writer(out):
        if done():  # another process made it meanwhile: keep its file, mapped there
            return
        try:
            proc = subprocess.run([sys.executable, "-m", *args], capture_output=True,
                                  text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ModelError(f"{what} took over {timeout:.0f} s{again}") from exc
    if proc.returncode != 0 or not done():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ModelError(f"{what} failed: {' | '.join(tail)}")


def ensure_export(src: Path, out: Path, timeout: float = 600.0) -> Path:
    """The export of `src` in `out` (fp32 and int8), made now in a child process (torch
    stays out of the caller) when missing. Return `out`."""
    made_once(out, lambda: (out / INT8).is_file() and (out / STAMP).is_file(),
              ["models.onnx_embed", str(src), str(out)],
              f"exporting the embedder {src} to ONNX", timeout,
              again="; it is tried again at the next start")
    return out


def ensure_mapped(out: Path, timeout: float = 120.0) -> Path:
    """`out`/FP32_MAPPED (FP32 with its weights in a file beside it), written now in a
    child process from FP32 when missing (the onnx package's parse of the model costs
    hundreds of MB the caller keeps). Return its path."""
    dest = out / FP32_MAPPED
    made_once(out, lambda: dest.is_file() and (out / (FP32_MAPPED + ".data")).is_file(),
              ["models.onnx_embed", "--mapped", str(out)],
              f"writing the mapped copy of {out / FP32}", timeout)
    return dest


def write_mapped(out: Path) -> None:
    """Write FP32's graph as FP32_MAPPED and its weights as FP32_MAPPED.data (the same
    numbers, byte for byte). Needs the onnx package, not torch."""
    import onnx

    tmp = out / f".mapped-{os.getpid()}"
    tmp.mkdir(exist_ok=True)
    model = onnx.load(str(out / FP32))
    onnx.save_model(model, str(tmp / FP32_MAPPED), save_as_external_data=True,
                    all_tensors_to_one_file=True, location=FP32_MAPPED + ".data",
                    size_threshold=1024)
    # the data first: the graph's presence means complete
    os.replace(tmp / (FP32_MAPPED + ".data"), out / (FP32_MAPPED + ".data"))
    os.replace(tmp / FP32_MAPPED, out / FP32_MAPPED)
    tmp.rmdir()


def export(src: Path, out: Path) -> None:
    """Export the transformer of the sentence-transformers folder `src` to `out`/model.onnx
    and its dynamically int8-quantized copy `out`/model_qint8.onnx. Needs torch and onnx."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{os.getpid()}"
    tmp.mkdir(exist_ok=True)
    bert = AutoModel.from_pretrained(str(src), local_files_only=True).eval()

    class Hidden(torch.nn.Module):  # keyword arguments: the positional order changes
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    model = Hidden().eval()
    names = ["input_ids", "attention_mask", "token_type_ids"]
    # A padded batch, so the trace keeps the attention-mask path (an all-ones mask lets
    # transformers drop it, and padded batches would then be embedded wrongly).
    ids = torch.randint(1000, 2000, (2, 8), dtype=torch.int64)
    mask = torch.ones((2, 8), dtype=torch.int64)
    mask[1, 5:] = 0
    sample = (ids, mask, torch.zeros((2, 8), dtype=torch.int64))
    axes = {n: {0: "batch", 1: "tokens"} for n in names}
    axes["last_hidden_state"] = {0: "batch", 1: "tokens"}
    with torch.no_grad():
        torch.onnx.export(model, sample, str(tmp / FP32), input_names=names,
                          output_names=["last_hidden_state"], dynamic_axes=axes,
                          opset_version=17, dynamo=False)
    # Per-channel uint8 weights: cosine with torch's vectors mean 0.991 (min 0.98) on the
    # eval week's events; per-tensor int8 only 0.948 (min 0.90).
    quantize_dynamic(str(tmp / FP32), str(tmp / INT8), weight_type=QuantType.QUInt8,
                     per_channel=True)
    (tmp / STAMP).write_text(json.dumps({"source": str(src), "sha256": source_digest(src),
                                         "torch": torch.__version__}))
    for name in (FP32, INT8, STAMP):  # the stamp last: its presence means complete
        os.replace(tmp / name, out / name)
    tmp.rmdir()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--mapped":
        write_mapped(Path(sys.argv[2]))
        sys.exit(0)
    if len(sys.argv) != 3:
        sys.exit("usage: python -m models.onnx_embed SENTENCE_TRANSFORMERS_FOLDER OUT_DIR\n"
                 "       python -m models.onnx_embed --mapped OUT_DIR")
    export(Path(sys.argv[1]), Path(sys.argv[2]))
