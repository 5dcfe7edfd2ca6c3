"""Routing overhead: an instant OpenAI-compatible upstream called directly vs through
memoryd's /v1/chat/completions, in one run.

Measures (same method as the LiteLLM anchor, so the ratios compare): p50/p99 latency of
plain completions and of the first streamed chunk, sequential and paired (direct and
memoryd alternate, so drift hits both); then req/s with 20 concurrent keep-alive clients
(threads, 100 requests each), direct and through memoryd. memoryd runs as a real daemon
(`memoryd run`, its own data dir, collectors off, telemetry on), routing `default` to the
upstream. Writes bench/results/routing_overhead.json.

    python bench/routing_overhead.py [--n 1000] [--stream-n 500]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import tomli_w

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, Contention, machine, stop_all, write_result  # noqa: E402

PAYLOAD = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
LITELLM = {"overhead_p50_ms": 23.8, "overhead_p99_ms": 30.8, "rps_20_clients": 47,
           "direct_rps_20_clients": 750, "first_chunk_p50_ms": 28.0,
           "direct_first_chunk_p50_ms": 2.5,
           "source": "measured on this machine kind, 2026-11-25 (LiteLLM proxy 1.108.7)"}


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


def summ(ms: list[float]) -> dict[str, float]:
    return {"n": len(ms), "p50_ms": round(pct(ms, 50), 3), "p95_ms": round(pct(ms, 95), 3),
            "p99_ms": round(pct(ms, 99), 3), "mean_ms": round(sum(ms) / len(ms), 3)}


def wait_file(path: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_text().strip()
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args} exited {proc.returncode}")
        time.sleep(0.05)
    raise SystemExit(f"{path} never appeared")


def one(c: httpx.Client, stream: bool, payload: dict[str, Any] = PAYLOAD
        ) -> tuple[float, float | None]:
    t = time.perf_counter()
    if stream:
        first = None
        with c.stream("POST", "/v1/chat/completions", json={**payload, "stream": True}) as r:
            for line in r.iter_lines():
                if line.startswith("data:") and first is None:
                    first = time.perf_counter()
            assert r.status_code == 200, r.status_code
        return (time.perf_counter() - t) * 1000, ((first or t) - t) * 1000
    r = c.post("/v1/chat/completions", json=payload)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert r.json()["choices"][0]["message"]["content"] == "Hello from fake upstream."
    return (time.perf_counter() - t) * 1000, None


def paired(direct: str, through: str, token: str, n: int, stream: bool,
           payload: dict[str, Any] = PAYLOAD) -> dict[str, Any]:
    cd = httpx.Client(base_url=direct, timeout=30)
    cm = httpx.Client(base_url=through, timeout=30, headers={"Authorization": f"Bearer {token}"})
    for _ in range(100):
        one(cd, stream, payload)
        one(cm, stream, payload)
    d, m, df, mf, diff, fdiff = [], [], [], [], [], []
    for i in range(n):
        order = [("d", cd), ("m", cm)] if i % 2 == 0 else [("m", cm), ("d", cd)]
        res = {tag: one(c, stream, payload) for tag, c in order}
        d.append(res["d"][0])
        m.append(res["m"][0])
        diff.append(res["m"][0] - res["d"][0])
        if stream:
            df.append(res["d"][1] or 0.0)
            mf.append(res["m"][1] or 0.0)
            fdiff.append((res["m"][1] or 0.0) - (res["d"][1] or 0.0))
    cd.close()
    cm.close()
    out: dict[str, Any] = {
        "direct": summ(d), "through_memoryd": summ(m),
        "overhead_paired_ms": {f"p{q}": round(pct(diff, q), 3) for q in (50, 95, 99)},
        "overhead_pctl_diff_ms": {f"p{q}": round(pct(m, q) - pct(d, q), 3) for q in (50, 95, 99)}}
    if stream:
        out["direct_first_chunk"] = summ(df)
        out["through_first_chunk"] = summ(mf)
        out["first_chunk_overhead_paired_ms"] = {f"p{q}": round(pct(fdiff, q), 3)
                                                 for q in (50, 95, 99)}
    return out


def concurrent(base: str, token: str | None, clients: int = 20, per: int = 100,
               payload: dict[str, Any] = PAYLOAD) -> dict[str, Any]:
    lat: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    barrier = threading.Barrier(clients + 1)
    headers = {"Authorization": f"Bearer {token}"} if token else None

    def worker(i: int) -> None:
        c = httpx.Client(base_url=base, timeout=60, headers=headers,
                         limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
        c.post("/v1/chat/completions", json=payload)
        barrier.wait()
        for _ in range(per):
            t = time.perf_counter()
            r = c.post("/v1/chat/completions", json=payload)
            lat[i].append((time.perf_counter() - t) * 1000)
            errors[i] += r.status_code != 200
        c.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    flat = [x for xs in lat for x in xs]
    return {**summ(flat), "clients": clients, "per_client": per, "wall_s": round(wall, 3),
            "rps": round(len(flat) / wall, 1), "errors": sum(errors)}


LITELLM_VENV = Path(os.environ.get("MEMORYD_BENCH_LITELLM_VENV",
                                   Path.home() / ".cache" / "memoryd" / "bench-litellm-venv"))
LITELLM_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY_DISABLED": "true",
               "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
               "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True", "LITELLM_LOCAL_BLOG_POSTS": "True",
               "LITELLM_LOCAL_POLICY_TEMPLATES": "True"}


def litellm_side(direct: str, work: Path, n: int, stream_n: int,
                 procs: list[subprocess.Popen[bytes]]) -> dict[str, Any]:
    """LiteLLM's proxy in front of the same upstream, in its own venv (never memoryd's)."""
    import secrets
    import socket

    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists():
        print(f"making LiteLLM's venv in {LITELLM_VENV} (once; ~750 MB) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run([str(LITELLM_VENV / "bin" / "pip"), "install", "-q",
                        "litellm[proxy]==1.108.7"], check=True)
    home = work / "litellm"
    (home / "home").mkdir(parents=True)
    (home / "config.yaml").write_text(
        "model_list:\n  - model_name: fake\n    litellm_params:\n      model: openai/fake\n"
        f"      api_base: {direct}/v1\n      api_key: sk-dummy-not-used\n"
        "litellm_settings:\n  telemetry: false\n  callbacks: []\n  success_callback: []\n"
        "  failure_callback: []\n  service_callback: []\ngeneral_settings: {}\n")
    key = "sk-" + secrets.token_hex(32)
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    env = {**os.environ, **LITELLM_ENV, "LITELLM_MASTER_KEY": key, "HOME": str(home / "home"),
           "XDG_CACHE_HOME": str(home / "home" / ".cache")}
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(binary), "--config", str(home / "config.yaml"), "--host",
                             "127.0.0.1", "--port", str(port)], env=env, cwd=home / "home",
                            stdout=open(home / "litellm.log", "wb"), stderr=subprocess.STDOUT)
    procs.append(proc)
    base = f"http://127.0.0.1:{port}"
    while True:
        try:
            if httpx.get(f"{base}/health/liveliness", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.perf_counter() - t0 > 300:
            raise SystemExit(f"litellm did not start, see {home / 'litellm.log'}")
        time.sleep(0.1)
    ready = time.perf_counter() - t0
    payload = {**PAYLOAD, "model": "fake"}
    print("LiteLLM: plain, streamed, 20 clients ...", flush=True)
    out = {"version": "1.108.7", "ready_s": round(ready, 2),
           "plain": paired(direct, base, key, n, False, payload),
           "stream": paired(direct, base, key, stream_n, True, payload),
           "concurrent_direct": concurrent(direct, None, payload=payload),
           "concurrent_litellm": concurrent(base, key, payload=payload)}
    proc.terminate()
    proc.wait(30)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--stream-n", type=int, default=500)
    ap.add_argument("--litellm", action="store_true",
                    help="also measure LiteLLM's proxy side by side (its own venv)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="memoryd-route-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        up = subprocess.Popen([sys.executable, str(ROOT / "bench" / "instant_upstream.py"),
                               str(work / "up.port")])
        procs.append(up)
        port = wait_file(work / "up.port", up)
        direct = f"http://127.0.0.1:{port}"
        httpx.get(f"{direct}/v1/models", timeout=10)
        home = work / "home"
        home.mkdir()
        (home / "config.toml").write_text(tomli_w.dumps({
            "api": {"port": 0},
            "collectors": {"files": {"roots": []}, "browser": {"enabled": False},
                           "shell": {"enabled": False}},
            "pipeline": {"summarize": False},
            "router": {"models": [{"name": "instant", "endpoint": f"{direct}/v1",
                                   "model": "fake", "concurrency": 64}],
                       "routes": {"default": ["instant"]}}}))
        env = {**os.environ, "MEMORYD_HOME": str(home)}
        t0 = time.perf_counter()
        daemon = subprocess.Popen([sys.executable, "-m", "daemon.cli", "run"], env=env,
                                  cwd=ROOT, stdout=subprocess.DEVNULL,
                                  stderr=open(work / "daemon.log", "wb"))
        procs.append(daemon)
        mport = wait_file(home / "data" / "api.port", daemon)
        token = (home / "data" / "token").read_text().strip()
        through = f"http://127.0.0.1:{mport}"
        while httpx.get(f"{through}/health", timeout=5).status_code != 200:
            time.sleep(0.05)
        ready = time.perf_counter() - t0
        out: dict[str, Any] = {"machine": machine(), "daemon_ready_s": round(ready, 2)}
        with Contention() as busy:
            print("plain completions, paired ...", flush=True)
            out["plain"] = paired(direct, through, token, args.n, stream=False)
            print("streamed completions, paired ...", flush=True)
            out["stream"] = paired(direct, through, token, args.stream_n, stream=True)
            print("20 concurrent clients ...", flush=True)
            out["concurrent_direct"] = concurrent(direct, None)
            out["concurrent_memoryd"] = concurrent(through, token)
        rss = psutil.Process(daemon.pid).memory_info().rss
        out["daemon_rss_mib_after"] = round(rss / 2**20, 1)
        if args.litellm:
            daemon.terminate()
            daemon.wait(30)
            with Contention() as busy2:
                out["litellm"] = litellm_side(direct, work, min(args.n, 300),
                                              min(args.stream_n, 150), procs)
            out["litellm"]["contention"] = busy2.summary()
        out["contention"] = busy.summary()
        p, s = out["plain"], out["stream"]
        cd, cm = out["concurrent_direct"], out["concurrent_memoryd"]
        out["summary"] = {
            "overhead_p50_ms": p["overhead_paired_ms"]["p50"],
            "overhead_p99_ms": p["overhead_paired_ms"]["p99"],
            "first_chunk_p50_ms": s["through_first_chunk"]["p50_ms"],
            "direct_first_chunk_p50_ms": s["direct_first_chunk"]["p50_ms"],
            "rps_20_clients": cm["rps"], "direct_rps_20_clients": cd["rps"],
            "share_of_direct_rps": round(cm["rps"] / cd["rps"], 3),
            "x_litellm_rps": round(cm["rps"] / LITELLM["rps_20_clients"], 1),
            "x_litellm_rps_normalized": round(
                (cm["rps"] / cd["rps"]) / (LITELLM["rps_20_clients"]
                                            / LITELLM["direct_rps_20_clients"]), 1),
            "targets": {"overhead_p50_ms": 2.0, "overhead_p99_ms": 5.0, "x_litellm_rps": 10}}
        out["litellm_anchor"] = LITELLM
        if "litellm" in out:
            ll = out["litellm"]
            out["summary"]["same_run_litellm"] = {
                "overhead_p50_ms": ll["plain"]["overhead_paired_ms"]["p50"],
                "overhead_p99_ms": ll["plain"]["overhead_paired_ms"]["p99"],
                "first_chunk_p50_ms": ll["stream"]["through_first_chunk"]["p50_ms"],
                "rps_20_clients": ll["concurrent_litellm"]["rps"],
                "direct_rps_20_clients": ll["concurrent_direct"]["rps"],
                "x_memoryd_over_litellm_rps": round(
                    cm["rps"] / max(ll["concurrent_litellm"]["rps"], 0.1), 1)}
        write_result("routing_overhead", out)
        print(f"overhead p50 {out['summary']['overhead_p50_ms']} ms, p99 "
              f"{out['summary']['overhead_p99_ms']} ms; first chunk p50 "
              f"{out['summary']['first_chunk_p50_ms']} ms (direct "
              f"{out['summary']['direct_first_chunk_p50_ms']}); 20 clients: {cm['rps']} req/s "
              f"(direct {cd['rps']}) = {out['summary']['x_litellm_rps']}x LiteLLM's 47")
        print(busy.line())
    finally:
        stop_all(procs)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
