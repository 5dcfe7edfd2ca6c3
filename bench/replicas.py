"""Replicas behind the router: throughput at 8 concurrent clients through memoryd to one
llama.cpp server, to two replicas of it, and to one server given both threads, in one run.

Three real `python -m llama_cpp.server` processes on the bundled 0.5B GGUF: A and B with
1 thread each, C with 2. One real daemon (`memoryd run`) knows them as three router
models: `one` (A), `two` (A and B as replicas, `endpoints = [...]`) and `one-2t` (C).
Rounds alternate one → two → one-2t so drift hits all three; each round is 8 client
threads sending `--per` requests each (max_tokens 8, temperature 0). Reports req/s and
latency p50/p95 per setup, and the ratio two/one. On a 2-core box two 1-thread replicas
can at best match one 2-thread server: the point of replicas is other machines.
Writes bench/results/replicas.json.

    python bench/replicas.py [--rounds 3] [--per 3] [--clients 8]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import tomli_w

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, Contention, machine, stop_all, write_result  # noqa: E402

GGUF = Path("/root/.cache/memoryd/models-dev/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
PROMPT = [{"role": "user", "content": "Say hello in one word."}]
SETUPS = ("one", "two", "one-2t")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def llama_server(port: int, threads: int, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(GGUF), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "512", "--n_threads", str(threads),
         "--interrupt_requests", "False"], stdout=open(log, "wb"), stderr=subprocess.STDOUT)


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args} exited {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} never answered")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


def round_of(base: str, token: str, model: str, clients: int, per: int) -> dict[str, Any]:
    """One round: `clients` threads, `per` requests each; return wall time and latencies."""
    lat: list[float] = []

    def worker(_: int) -> None:
        with httpx.Client(base_url=base, timeout=600,
                          headers={"Authorization": f"Bearer {token}"}) as c:
            for _ in range(per):
                t = time.perf_counter()
                r = c.post("/v1/chat/completions", json={
                    "model": model, "messages": PROMPT, "max_tokens": 8, "temperature": 0})
                assert r.status_code == 200, (r.status_code, r.text[:300])
                assert r.headers["x-memoryd-model"] == model
                lat.append((time.perf_counter() - t) * 1000)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    return {"seconds": time.perf_counter() - t0, "latencies_ms": lat}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--per", type=int, default=3, help="requests per client per round")
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args()
    if not GGUF.exists():
        raise SystemExit(f"{GGUF} is missing: run `memoryd models` with models.dir there")
    work = Path(tempfile.mkdtemp(prefix="memoryd-replicas-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ports = {n: free_port() for n in ("a", "b", "c")}
        for name, threads in (("a", 1), ("b", 1), ("c", 2)):
            procs.append(llama_server(ports[name], threads, work / f"{name}.log"))
        url = {n: f"http://127.0.0.1:{p}/v1" for n, p in ports.items()}
        for proc, name in zip(procs, ("a", "b", "c"), strict=True):
            wait_http(f"{url[name]}/models", proc)
        common = {"model": "qwen", "context_tokens": 512, "concurrency": 1,
                  "timeout_seconds": 600}
        home = work / "home"
        home.mkdir()
        (home / "config.toml").write_text(tomli_w.dumps({
            "api": {"port": 0},
            "collectors": {"files": {"roots": []}, "browser": {"enabled": False},
                           "shell": {"enabled": False}},
            "pipeline": {"summarize": False},
            "router": {"models": [
                {"name": "one", "endpoint": url["a"], **common},
                {"name": "two", "endpoints": [url["a"], url["b"]], **common},
                {"name": "one-2t", "endpoint": url["c"], **common}],
                "routes": {"default": ["one"]}, "retries": 0}}))
        env = {**os.environ, "MEMORYD_HOME": str(home)}
        daemon = subprocess.Popen([sys.executable, "-m", "daemon.cli", "run"], env=env,
                                  cwd=ROOT, stdout=subprocess.DEVNULL,
                                  stderr=open(work / "daemon.log", "wb"))
        procs.append(daemon)
        port_file = home / "data" / "api.port"
        deadline = time.monotonic() + 60
        while not port_file.exists():
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the daemon did not start: {work / 'daemon.log'}")
            time.sleep(0.1)
        base = f"http://127.0.0.1:{port_file.read_text().strip()}"
        token = (home / "data" / "token").read_text().strip()
        wait_http(f"{base}/health", daemon, 60)
        for model in SETUPS:  # warm-up: page the GGUF in everywhere, not counted
            round_of(base, token, model, 2, 1)
        got: dict[str, list[dict[str, Any]]] = {m: [] for m in SETUPS}
        with Contention() as busy:
            for r in range(args.rounds):
                for model in SETUPS:
                    res = round_of(base, token, model, args.clients, args.per)
                    got[model].append(res)
                    n = args.clients * args.per
                    print(f"round {r + 1} {model:7} {n / res['seconds']:6.2f} req/s", flush=True)
        with httpx.Client(base_url=base, timeout=30,
                          headers={"Authorization": f"Bearer {token}"}) as c:
            models = {m["id"]: m for m in c.get("/v1/models").json()["data"]}
        out: dict[str, Any] = {"machine": machine(), "contention": busy.summary(),
                               "params": {"clients": args.clients, "per": args.per,
                                          "rounds": args.rounds, "max_tokens": 8,
                                          "gguf": GGUF.name}}
        for model in SETUPS:
            rounds = got[model]
            n = args.clients * args.per
            rps = [n / x["seconds"] for x in rounds]
            lat = [v for x in rounds for v in x["latencies_ms"]]
            out[model] = {"req_per_s_median": round(statistics.median(rps), 3),
                          "req_per_s_rounds": [round(v, 3) for v in rps],
                          "latency_p50_ms": round(pct(lat, 50), 1),
                          "latency_p95_ms": round(pct(lat, 95), 1)}
        out["two_replicas"] = models["two"]["memoryd"]["replicas"]
        out["ratio_two_over_one"] = round(out["two"]["req_per_s_median"]
                                          / out["one"]["req_per_s_median"], 3)
        out["ratio_two_over_one_2t"] = round(out["two"]["req_per_s_median"]
                                             / out["one-2t"]["req_per_s_median"], 3)
        print(f"\n{'setup':8} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8}")
        for model in SETUPS:
            o = out[model]
            print(f"{model:8} {o['req_per_s_median']:7.2f} {o['latency_p50_ms']:8.0f} "
                  f"{o['latency_p95_ms']:8.0f}")
        print(f"two / one = {out['ratio_two_over_one']}, "
              f"two / one-2t = {out['ratio_two_over_one_2t']}")
        print("served per replica:", {r["endpoint"]: r["served"] for r in out["two_replicas"]})
        print(busy.line())
        write_result("replicas", out)
    finally:
        stop_all(procs)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
