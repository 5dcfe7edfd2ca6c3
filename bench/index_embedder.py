"""A saved file searchable after the save, and the worker's RSS: indexing with torch
(sentence-transformers) beside indexing with the ONNX export (models/onnx_index.py).

For each `[models] embedder_runtime`, interleaved (torch, onnx, torch, onnx, …) in one
run: `memoryd run` on a temp data dir whose files root holds 20 small notes
(`idle_unload_seconds` 10, summaries off), waits until a note is searchable through the
API and the worker has left (idle), then:
  - cold: writes a new file with a word of its own and times until a search through the
    Unix socket finds it (from the journal, before any indexing: daemon/recall/fresh.py),
    then until it is indexed (the worker starts and loads its embedder on the way);
  - the worker's RSS and the daemon tree's RSS right after (the embedder loaded);
  - warm: one more new file, timed the same way.
The file collector's own delay (inotify + the 2 s pipeline interval) is in both.

Run:  PY bench/index_embedder.py [--rounds N] [--runtimes onnx] [MODELS_DIR]   (~1-2 min a daemon)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import tomli_w

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import Contention, machine, write_result

MB = 1024 * 1024
HERE = Path(__file__).resolve().parents[1]


def _start(runtime: str, models_dir: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    tmp = Path(tempfile.mkdtemp(prefix="index-embedder-"))
    root = tmp / "files"
    root.mkdir()
    for i in range(20):
        (root / f"note{i}.txt").write_text(f"note {i}: the quokka ferry leaves pier {i}\n")
    data = tmp / "data"
    cfg = tmp / "config.toml"
    cfg.write_text(tomli_w.dumps({
        "data_dir": str(data), "api": {"port": 0},
        "collectors": {"files": {"roots": [str(root)]}, "browser": {"enabled": False},
                       "shell": {"enabled": False}},
        "models": {"dir": models_dir, "idle_unload_seconds": 10,
                   "embedder_runtime": runtime},
        "pipeline": {"summarize": False}}))
    log = open(tmp / "daemon.log", "wb")
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    proc = subprocess.Popen([sys.executable, "-m", "daemon.cli", "--config", str(cfg), "run"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=HERE, env=env)
    return proc, data, root


def _found(c: httpx.Client, word: str) -> bool:
    try:
        r = c.get("/v1/memory/search", params={"q": word, "k": 5})
        r.raise_for_status()
    except httpx.HTTPError:
        return False
    return any(word in json.dumps(h) for h in r.json()["results"])


def _save_to_searchable(c: httpx.Client, root: Path, word: str, deadline: float) -> float:
    t = time.perf_counter()
    (root / f"{word}.txt").write_text(f"meeting notes: the {word} migration plan\n")
    while not _found(c, word):
        assert time.monotonic() < deadline, f"{word} never searchable"
        time.sleep(0.1)
    return time.perf_counter() - t


def _rss(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / MB


def run(runtime: str, n: int, models_dir: str) -> dict[str, Any]:
    proc, data, root = _start(runtime, models_dir)
    out: dict[str, Any] = {"runtime": runtime}
    try:
        sock, deadline = data / "memoryd.sock", time.monotonic() + 900
        while not (sock.exists() and (data / "token").exists()):
            assert time.monotonic() < deadline and proc.poll() is None, "daemon never started"
            time.sleep(0.2)
        c = httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)),
                         base_url="http://localhost", timeout=300, headers={
                             "Authorization": f"Bearer {(data / 'token').read_text().strip()}"})
        while not _found(c, "quokka"):
            assert time.monotonic() < deadline, "never searchable"
            time.sleep(1)
        while c.get("/v1/status").json()["engine"]["worker"] != "stopped (idle)":
            assert time.monotonic() < deadline, "the worker never idled out"
            time.sleep(1)
        while len(psutil.Process(proc.pid).children(recursive=True)) > 2:  # tracker+reader
            assert time.monotonic() < deadline, "the idle worker's process never left"
            time.sleep(1)
        time.sleep(2)
        started = time.perf_counter()
        out["cold_save_to_searchable_s"] = round(
            _save_to_searchable(c, root, f"zephyrcold{n}{runtime}", deadline), 2)
        # found by full text from the journal at once (daemon/recall/fresh.py); the
        # worker's start and embedding take this long before the store holds it
        while (status := c.get("/v1/status").json())["journal"]["new"] or \
                "pid " not in status["engine"]["worker"]:
            assert time.monotonic() < deadline, "the new file was never indexed"
            time.sleep(0.1)
        out["cold_save_to_indexed_s"] = round(time.perf_counter() - started, 2)
        worker = status["engine"]["worker"]
        wpid = int(worker.split("pid ")[1].rstrip(")"))
        out["worker_rss_mb"] = round(_rss(wpid), 1)
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        out["tree_rss_mb"] = round(sum(_rss(p.pid) for p in tree), 1)
        out["warm_save_to_searchable_s"] = round(
            _save_to_searchable(c, root, f"zephyrwarm{n}{runtime}", deadline), 2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models_dir", nargs="?",
                    default=str(Path.home() / ".cache" / "memoryd" / "test-models"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--runtimes", nargs="+", default=["torch", "onnx"],
                    choices=["torch", "onnx"])
    args = ap.parse_args()
    rows = []
    with Contention() as load:
        for n in range(args.rounds):
            for runtime in args.runtimes:
                rows.append(run(runtime, n, args.models_dir))
                print(json.dumps(rows[-1]), flush=True)
    med = {rt: {k: statistics.median(r[k] for r in rows if r["runtime"] == rt)
                for k in rows[0] if k != "runtime"} for rt in args.runtimes}
    result = {"machine": machine(), "load": load.summary(), "rows": rows, "median": med}
    if len(med) == 2:
        result["torch_over_onnx"] = {k: round(med["torch"][k] / med["onnx"][k], 1)
                                     for k in med["onnx"]}
    print(json.dumps(result, indent=1))
    write_result("index_embedder", result)


if __name__ == "__main__":
    main()
