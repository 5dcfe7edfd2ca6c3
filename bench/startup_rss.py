"""Start-up time to /health and idle RSS of the daemon's process tree: two source trees
side by side (by default the release before issue 15's refactor, commit 7f7785e, and this
checkout), N runs each, alternating, so both see the same load on the box.

Each run starts `python -m daemon.cli --config C run` with PYTHONPATH (and the working
directory) at the tree measured, on a fresh temp data dir (no watched roots, browser and
shell collectors off, API port 0), and measures:
  start_s   spawn -> /health answering 200 on 127.0.0.1
  rss_mb    the RSS of the daemon and every child it has, summed, after --idle seconds
            with no request (the model worker is not started by an idle daemon)
then stops it with SIGTERM.

Run:  git worktree add /tmp/before 7f7785e
      ~/.local/opt/memoryd/venv/bin/python bench/startup_rss.py --before /tmp/before [--runs 5]
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import tomli_w

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import Contention, machine, write_result  # noqa: E402

MB = 1024 * 1024


def _config(tmp: Path) -> Path:
    cfg = tmp / "config.toml"
    cfg.write_text(tomli_w.dumps({
        "data_dir": str(tmp / "data"),
        "collectors": {"files": {"roots": []}, "browser": {"enabled": False},
                       "shell": {"enabled": False}},
        "api": {"port": 0},
    }))
    return cfg


def _healthy(port_file: Path) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", int(port_file.read_text()), timeout=2)
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except (OSError, ValueError):
        return False


def _tree_rss(pid: int) -> int:
    proc = psutil.Process(pid)
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def one_run(tree: Path, idle: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="memoryd-bench-") as t:
        tmp = Path(t)
        env = {**os.environ, "PYTHONPATH": str(tree), "HOME": str(tmp),
               "MEMORYD_HOME": str(tmp / "home"), "HF_HUB_OFFLINE": "1"}
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "daemon.cli", "--config",
                                 str(_config(tmp)), "run"], cwd=tree, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port_file = tmp / "data" / "api.port"
            while not _healthy(port_file):
                if proc.poll() is not None or time.monotonic() - started > 120:
                    raise SystemExit(f"the daemon from {tree} did not start")
                time.sleep(0.02)
            start_s = time.monotonic() - started
            time.sleep(idle)
            rss = _tree_rss(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    return {"start_s": round(start_s, 3), "rss_mb": round(rss / MB, 1)}


def _which(tree: Path) -> str:
    """The file `daemon.cli` resolves to with that tree on the path (a sanity check that
    the run measures the tree it names, not the installed one)."""
    return subprocess.run([sys.executable, "-c", "import daemon.cli; print(daemon.cli.__file__)"],
                          cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, check=True,
                          capture_output=True, text=True).stdout.strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", type=Path, default=Path("/tmp/before"))
    ap.add_argument("--after", type=Path, default=ROOT)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--idle", type=float, default=10.0, help="seconds idle before the RSS")
    args = ap.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    for name, tree in trees.items():
        where = _which(tree)
        assert Path(where).is_relative_to(tree), f"{name}: daemon.cli from {where}"
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    with Contention() as busy:
        for i in range(args.runs):
            for name in (("before", "after") if i % 2 == 0 else ("after", "before")):
                r = one_run(trees[name], args.idle)
                runs[name].append(r)
                print(f"run {i + 1} {name:6s} start {r['start_s']:.2f} s  rss {r['rss_mb']:.1f} MB")
    summary: dict[str, Any] = {}
    for name, rs in runs.items():
        summary[name] = {k: {"median": round(statistics.median(r[k] for r in rs), 3),
                             "min": min(r[k] for r in rs), "max": max(r[k] for r in rs)}
                         for k in ("start_s", "rss_mb")}
    print(f"\n{'':8s}{'start to /health (s)':>24s}{'idle RSS of the tree (MB)':>28s}")
    for name, s in summary.items():
        st, rss = s["start_s"], s["rss_mb"]
        print(f"{name:8s}{st['median']:>10.2f} ({st['min']:.2f}-{st['max']:.2f})"
              f"{rss['median']:>16.1f} ({rss['min']:.1f}-{rss['max']:.1f})")
    b, a = summary["before"], summary["after"]
    print(f"after/before: start {a['start_s']['median'] / b['start_s']['median']:.2f}x, "
          f"RSS {a['rss_mb']['median'] / b['rss_mb']['median']:.2f}x")
    print(busy.line())
    write_result("startup_rss", {"machine": machine(), "trees": {k: str(v) for k, v in
                                                                 trees.items()},
                                 "runs": runs, "summary": summary,
                                 "contention": busy.summary()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
