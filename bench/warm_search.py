"""Warm API search end to end (HTTP on the Unix socket → daemon → resident reader: the
query embedding, the hybrid search, the answer), two source trees side by side.

Each tree runs `memoryd run` on its own temp data dir (20 small notes, summaries off, the
reader never shed, the worker kept); once a note is searchable, the searches alternate
between the daemons query by query, so load on the shared box hits both alike. The
first 2 rounds are warm-up.

Run:  PY bench/warm_search.py --before DIR [--rounds 20] [MODELS_DIR]
      (DIR: a checkout of an earlier commit, e.g. `git worktree add --detach DIR main`)
"""

from __future__ import annotations

import argparse
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
import tomli_w

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import Contention, machine, write_result
from bench.search_latency import pct

QUERY = "which pier does the quokka ferry"


def start(tree: Path, models_dir: str) -> tuple[subprocess.Popen[bytes], httpx.Client]:
    tmp = Path(tempfile.mkdtemp(prefix="warm-search-"))
    root = tmp / "files"
    root.mkdir()
    for i in range(20):
        (root / f"note{i}.txt").write_text(f"note {i}: the quokka ferry leaves pier {i}\n")
    data, cfg = tmp / "data", tmp / "config.toml"
    cfg.write_text(tomli_w.dumps({
        "data_dir": str(data), "api": {"port": 0},
        "collectors": {"files": {"roots": [str(root)]}, "browser": {"enabled": False},
                       "shell": {"enabled": False}},
        "models": {"dir": models_dir, "idle_unload_seconds": 3600},
        "pipeline": {"summarize": False},
        "search": {"resident_reader": True, "reader_shed_seconds": 0}}))
    proc = subprocess.Popen([sys.executable, "-m", "daemon.cli", "--config", str(cfg), "run"],
                            stdout=open(tmp / "daemon.log", "wb"), stderr=subprocess.STDOUT,
                            cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)})
    sock, deadline = data / "memoryd.sock", time.monotonic() + 600
    while not (sock.exists() and (data / "token").exists()):
        assert time.monotonic() < deadline and proc.poll() is None, "daemon never started"
        time.sleep(0.2)
    c = httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://localhost",
                     timeout=300, headers={
                         "Authorization": "Bearer " + (data / "token").read_text().strip()})
    while True:
        try:
            r = c.get("/v1/memory/search", params={"q": QUERY})
            if r.status_code == 200 and r.json()["results"]:
                return proc, c
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "never searchable"
        time.sleep(1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models_dir", nargs="?",
                    default=str(Path.home() / ".cache" / "memoryd" / "test-models"))
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=20)
    a = ap.parse_args()
    trees = {"before": a.before.resolve(), "after": Path(__file__).resolve().parents[1]}
    with Contention() as load:
        daemons = {name: start(tree, a.models_dir) for name, tree in trees.items()}
        times: dict[str, list[float]] = {name: [] for name in trees}
        try:
            for rnd in range(a.rounds + 2):
                for name, (_, c) in daemons.items():
                    t = time.perf_counter()
                    c.get("/v1/memory/search", params={"q": QUERY}).raise_for_status()
                    if rnd >= 2:
                        times[name].append((time.perf_counter() - t) * 1000)
            served = {n: c.get("/v1/status").json()["engine"].get("reads_served")
                      for n, (_, c) in daemons.items()}
        finally:
            for proc, _ in daemons.values():
                proc.send_signal(signal.SIGTERM)
                proc.wait(120)
    res: dict[str, Any] = {n: {"p50_ms": round(statistics.median(v), 1),
                               "p95_ms": round(pct(v, 0.95), 1), "n": len(v)}
                           for n, v in times.items()}
    for n, r in res.items():
        print(f"{n:7s} warm API search p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms "
              f"(reads served: {served[n]})")
    print(load.line())
    write_result("warm_search", {"machine": machine(), "contention": load.summary(),
                                 "trees": {n: str(t) for n, t in trees.items()},
                                 "query": QUERY, "results": res, "reads_served": served})


if __name__ == "__main__":
    main()
