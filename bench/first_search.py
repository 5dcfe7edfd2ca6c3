"""The first search after the worker idled out, with and without the resident reader.

For each mode, one after the other in one run: `memoryd run` on a temp data dir whose
files root holds 20 small notes (`idle_unload_seconds` 10, summaries off so only the
search path is measured), waits until a note is searchable through the API, waits until
the worker has left (status says "stopped (idle)") and, when the reader sheds, until it
has shed, then times through the Unix socket:
  - the first search (cold: nothing but the daemon and, with it on, the reader is up);
  - 5 more (warm), median;
and reads the idle daemon tree's RSS and PSS, and each process's RSS split into
anonymous (its own) and file-backed (native code, mapped weights: page cache).
The worker idles out after 10 s and the reader sheds after 5 s here instead of the
defaults (300 s, 60 s): the state they leave is the same as after 10 idle minutes.

Modes: the resident reader with its pages shed (the default), without shedding
(`reader_shed_seconds` 0), and no reader (`resident_reader` false); with
`--before DIR` (a checkout of an earlier commit) its resident reader runs first, from
that tree, in the same run.

Run:  PY bench/first_search.py [--before DIR] [MODELS_DIR]   (~1-2 min a mode)
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


def _rollup(pid: int) -> dict[str, float]:
    """RSS, PSS and anonymous MB of one process (/proc/PID/smaps_rollup)."""
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Rss", "Pss", "Anonymous"):
            out[key.lower()] = int(value.split()[0]) / 1024
    return out


def _tree_memory(pid: int) -> dict[str, Any]:
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    rss = pss = anon = 0.0
    each = []
    for p in procs:
        try:
            m, cmd = _rollup(p.pid), " ".join(p.cmdline()[-2:])[-40:]
        except (OSError, psutil.Error):
            continue
        rss, pss, anon = rss + m["rss"], pss + m["pss"], anon + m["anonymous"]
        each.append({"cmd": cmd, "rss_mb": round(m["rss"], 1),
                     "anon_mb": round(m["anonymous"], 1),
                     "file_mb": round(m["rss"] - m["anonymous"], 1)})
    return {"tree_rss_mb": round(rss, 1), "tree_pss_mb": round(pss, 1),
            "tree_anon_mb": round(anon, 1), "processes": len(procs), "each": each}


def run(label: str, tree: Path, resident: bool, shed: float | None,
        models_dir: str) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="first-search-"))
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
        "models": {"dir": models_dir, "idle_unload_seconds": 10},
        "pipeline": {"summarize": False},
        "search": {"resident_reader": resident,
                   **({} if shed is None else {"reader_shed_seconds": shed})}}))
    log = open(tmp / "daemon.log", "wb")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.Popen([sys.executable, "-m", "daemon.cli", "--config", str(cfg), "run"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=tree, env=env)
    out: dict[str, Any] = {"mode": label, "resident_reader": resident,
                           "reader_shed_seconds": shed}
    try:
        sock = data / "memoryd.sock"
        deadline = time.monotonic() + 600
        while not (sock.exists() and (data / "token").exists()):
            assert time.monotonic() < deadline and proc.poll() is None, "daemon never started"
            time.sleep(0.2)
        token = (data / "token").read_text().strip()
        c = httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)),
                         base_url="http://localhost", timeout=300,
                         headers={"Authorization": f"Bearer {token}"})

        def search() -> float:
            t = time.perf_counter()
            r = c.get("/v1/memory/search", params={"q": "which pier does the quokka ferry"})
            r.raise_for_status()
            assert r.json()["results"], "nothing found"
            return time.perf_counter() - t

        while True:
            try:
                search()
                break
            except (httpx.HTTPError, AssertionError):
                assert time.monotonic() < deadline, "never searchable"
                time.sleep(1)
        while c.get("/v1/status").json()["engine"]["worker"] != "stopped (idle)":
            assert time.monotonic() < deadline, "the worker never idled out"
            time.sleep(1)
        # "stopped" is said at once; its process may take a while to leave a busy box
        want = 1 if resident else 0  # the reader (multiprocessing's tracker, before, aside)
        while len([k for k in psutil.Process(proc.pid).children(recursive=True)
                   if "resource_tracker" not in " ".join(k.cmdline())]) > want:
            assert time.monotonic() < deadline, "the idle worker's process never left"
            time.sleep(1)
        while shed and not c.get("/v1/status").json()["engine"].get(
                "reader_memory", {}).get("sheds"):
            assert time.monotonic() < deadline, "the reader never shed"
            time.sleep(1)
        time.sleep(3)
        out.update(_tree_memory(proc.pid))
        t = time.perf_counter()
        try:
            search()
        except httpx.HTTPStatusError as exc:  # the worker's model load outlasted the call
            out["first_search_error"] = exc.response.status_code
        out["first_search_s"] = round(time.perf_counter() - t, 3)
        out["warm_search_s_p50"] = round(statistics.median(search() for _ in range(5)), 3)
        eng = c.get("/v1/status").json()["engine"]
        out["worker_after"] = eng["worker"]
        out["reads_served"] = eng.get("reads_served")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models_dir", nargs="?",
                    default=str(Path.home() / ".cache" / "memoryd" / "test-models"))
    ap.add_argument("--before", type=Path, help="a checkout of an earlier commit")
    args = ap.parse_args()
    here = Path(__file__).resolve().parents[1]
    modes: list[tuple[str, Path, bool, float | None]] = []
    if args.before:
        modes.append(("before: reader, shed when idle", args.before.resolve(), True, 5.0))
    modes += [("reader, shed when idle", here, True, 5.0),
              ("reader, never shed", here, True, 0.0), ("no reader", here, False, 0.0)]
    rows = []
    with Contention() as load:
        for label, tree, resident, shed in modes:
            rows.append(run(label, tree, resident, shed, args.models_dir))
            print(json.dumps(rows[-1]), flush=True)
    off = rows[-1]
    result = {"machine": machine(), "load": load.summary(), "rows": rows,
              "first_search_ratio_off_over_on": {
                  r["mode"]: round(off["first_search_s"] / r["first_search_s"], 1)
                  for r in rows[:-1]}}
    print(json.dumps(result, indent=1))
    write_result("first_search", result)


if __name__ == "__main__":
    main()
