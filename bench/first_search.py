"""The first search after the worker idled out, with and without the resident reader.

For each mode (`[search] resident_reader` true, then false), one after the other in one
run: `memoryd run` on a temp data dir whose files root holds 20 small notes
(`idle_unload_seconds` 10, summaries off so only the search path is measured), waits
until a note is searchable through the API, waits until the worker has left (status says
"stopped (idle)"), then times through the Unix socket:
  - the first search (cold: nothing but the daemon and, with it on, the reader is up);
  - 5 more (warm), median;
and reads the idle daemon tree's RSS and PSS (daemon + reader; the worker is gone).
The worker idles out after 10 s here instead of the default 300 s: the state it leaves
is the same as after 10 idle minutes (its process and models are gone).

Run:  PY bench/first_search.py            (~4 min on the 2-core box)
"""

from __future__ import annotations

import json
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
from bench.common import machine, write_result

MB = 1024 * 1024


def _tree_memory(pid: int) -> dict[str, float]:
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    rss = pss = 0.0
    for p in procs:
        try:
            full = p.memory_full_info()
        except psutil.Error:
            continue
        rss += full.rss
        pss += getattr(full, "pss", full.rss)
    return {"tree_rss_mb": round(rss / MB, 1), "tree_pss_mb": round(pss / MB, 1),
            "processes": len(procs)}


def run(resident: bool, models_dir: str) -> dict[str, Any]:
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
        "search": {"resident_reader": resident}}))
    log = open(tmp / "daemon.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "daemon.cli", "--config", str(cfg), "run"],
                            stdout=log, stderr=subprocess.STDOUT)
    out: dict[str, Any] = {"resident_reader": resident}
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
        want = 2 if resident else 1  # multiprocessing's resource tracker (+ the reader)
        while len(psutil.Process(proc.pid).children(recursive=True)) > want:
            assert time.monotonic() < deadline, "the idle worker's process never left"
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
    models_dir = sys.argv[1] if len(sys.argv) > 1 else str(
        Path.home() / ".cache" / "memoryd" / "test-models")
    rows = []
    for resident in (True, False):
        rows.append(run(resident, models_dir))
        print(json.dumps(rows[-1]), flush=True)
    on, off = rows
    result = {"machine": machine(), "rows": rows,
              "first_search_ratio_off_over_on": round(
                  off["first_search_s"] / on["first_search_s"], 1)}
    print(json.dumps(result, indent=1))
    write_result("first_search", result)


if __name__ == "__main__":
    main()
