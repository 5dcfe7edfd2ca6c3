"""Bounded load on a real daemon: many concurrent clients on search and on routed
completions. Every request must succeed, and the daemon's memory must level off rather
than grow with the number of requests served. Latency is printed (p50/p99), not asserted:
speed belongs to bench/."""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import httpx
import psutil

from tests.daemon.upstream_fixtures import model_entry

CLIENTS = 20


def _rss_mb(pid: int) -> float:
    p = psutil.Process(pid)
    return sum(x.memory_info().rss for x in [p, *p.children(recursive=True)]) / 2**20


def _hammer(port: int, token: str, seconds: float, request: Any) -> tuple[list[float], list[str]]:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(n: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                          headers={"Authorization": f"Bearer {token}"}) as c:
            i = 0
            while time.monotonic() < stop:
                t = time.perf_counter()
                try:
                    r = request(c, n, i)
                    ok = r.status_code == 200
                    why = f"{r.status_code} {r.text[:200]}"
                except httpx.HTTPError as exc:
                    ok, why = False, repr(exc)
                with lock:
                    (latencies.append((time.perf_counter() - t) * 1000) if ok
                     else errors.append(why))
                i += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors


def _pct(xs: list[float], p: float) -> float:
    return statistics.quantiles(xs, n=100)[int(p) - 1] if len(xs) > 1 else xs[0]


def test_concurrent_search_and_completions_all_succeed_and_memory_levels_off(
        make_config: Any, start_daemon: Any, upstreams: Any) -> None:
    up = upstreams("instant")
    d = start_daemon(make_config([], pipeline={"summarize": False},
                                 router={"models": [model_entry(up)],
                                         "routes": {"default": ["instant"]}}))
    events = [{"source": "loadtest", "kind": "note.saved", "subject": f"note://{i}",
               "ts": f"2026-11-2{i % 5}T09:{i % 60:02d}:00Z",
               "text": f"note {i} about project {['heron', 'kestrel', 'osprey'][i % 3]} "
                       f"ticket CRM-{1000 + i}"} for i in range(300)]
    with d.tcp() as t:
        assert t.post("/v1/events", json={"events": events}, headers=d.auth()).status_code == 200
        deadline = time.monotonic() + 120
        while t.get("/v1/status", headers=d.auth()).json()["journal"]["new"] and \
                time.monotonic() < deadline:
            time.sleep(0.5)
        assert t.get("/v1/status", headers=d.auth()).json()["journal"]["new"] == 0

    def search(c: httpx.Client, n: int, i: int) -> httpx.Response:
        q = ["heron CRM", "kestrel ticket", "what about osprey", f"CRM-{1000 + (n * 7 + i) % 300}"]
        return c.get("/v1/memory/search", params={"q": q[(n + i) % 4], "k": 5})

    def complete(c: httpx.Client, n: int, i: int) -> httpx.Response:
        return c.post("/v1/chat/completions", json={
            "model": "auto", "messages": [{"role": "user", "content": f"client {n} asks {i}"}]})

    pid = d.proc.pid
    _hammer(d.port, d.token, 5, search)  # warm up: worker, embedder, caches
    rss_warm = _rss_mb(pid)
    lat_s, err_s = _hammer(d.port, d.token, 20, search)
    rss_mid = _rss_mb(pid)
    lat_c, err_c = _hammer(d.port, d.token, 15, complete)
    lat_s2, err_s2 = _hammer(d.port, d.token, 20, search)
    rss_end = _rss_mb(pid)
    print(f"\nsearch: {len(lat_s) + len(lat_s2)} ok, p50 {_pct(lat_s + lat_s2, 50):.0f} ms, "
          f"p99 {_pct(lat_s + lat_s2, 99):.0f} ms; completions: {len(lat_c)} ok, "
          f"p50 {_pct(lat_c, 50):.1f} ms, p99 {_pct(lat_c, 99):.1f} ms; RSS warm "
          f"{rss_warm:.0f} MB, after {len(lat_s)} searches {rss_mid:.0f} MB, at the end "
          f"{rss_end:.0f} MB")
    assert not err_s and not err_c and not err_s2, (err_s + err_c + err_s2)[:5]
    assert lat_s and lat_c and lat_s2
    assert up.stats()["calls"] == len(lat_c)  # every completion reached the upstream once
    # The second round of searches, after as many again, may not cost memory in
    # proportion: allow allocator noise, not growth per request.
    assert rss_end - rss_mid < max(100.0, 0.15 * rss_mid), (rss_warm, rss_mid, rss_end)
