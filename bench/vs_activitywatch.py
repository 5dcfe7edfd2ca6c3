"""memoryd beside ActivityWatch's aw-server, measured in one run on the same machine.

For each server, in turn: start-up (spawn → its health/info route answers), idle RSS and
CPU over a window, then events/s pushed one POST at a time (keep-alive HTTP) and in
batches of 500, then RSS after the burst. aw-server runs in `--testing` mode on
127.0.0.1:5666 with its XDG dirs in a temp folder; memoryd runs `memoryd run` with a temp
MEMORYD_HOME, its collectors off (nothing to watch) and events pushed to `POST /v1/events`,
so both do the same job: take events over HTTP and make them durable.

They are not equal jobs after that: memoryd redacts secrets, passes its privacy gate,
journals with fsync'd WAL commits, and then indexes the events (the worker embeds them
with sentence-transformers) while the burst is still arriving. The figures say what that
costs. aw-server lives in its own virtual environment, made by this script
(bench/.venvs/aw, `aw-server==0.12.0` with the `peewee==3.19.0` and `flask==2.2.5` pins
it needs), never in memoryd's.

Run:  /root/.local/share/memoryd/venv/bin/python bench/vs_activitywatch.py [--idle 60] [--events 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import Contention, cpu_seconds, machine, write_result

ROOT = Path(__file__).resolve().parents[1]
AW_VENV = ROOT / "bench" / ".venvs" / "aw"
AW_PINS = ["aw-server==0.12.0", "peewee==3.19.0", "flask==2.2.5"]
AW_BASE = "http://127.0.0.1:5666"
MEMORYD = str(Path(sys.executable).parent / "memoryd")
MODELS_DIR = os.environ.get("MEMORYD_TEST_MODELS_DIR",
                            str(Path.home() / ".cache/memoryd/test-models"))
BATCH = 500
MB = 2**20


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def ensure_aw_venv() -> Path:
    exe = AW_VENV / "bin" / "aw-server"
    if not exe.exists():
        log(f"making aw-server's own venv at {AW_VENV} (once)")
        subprocess.run([sys.executable, "-m", "venv", str(AW_VENV)], check=True)
        subprocess.run([str(AW_VENV / "bin" / "pip"), "install", "-q", *AW_PINS], check=True)
    return exe


def tree(p: psutil.Process) -> list[psutil.Process]:
    try:
        return [p, *p.children(recursive=True)]
    except psutil.Error:
        return [p]


def rss_mb(p: psutil.Process) -> float:
    total = 0
    for x in tree(p):
        try:
            total += x.memory_info().rss
        except psutil.Error:
            pass
    return round(total / MB, 1)


def cpu_s(p: psutil.Process) -> float:
    return cpu_seconds(tree(p))


def wait_up(proc: subprocess.Popen[bytes], client: httpx.Client, path: str,
            logfile: Path) -> None:
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"server exited {proc.returncode}; see {logfile}")
        try:
            if client.get(path, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.01)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Server:
    """One server under test: how to start it and how to push events to it."""

    name = ""
    health = ""

    def start(self, work: Path) -> tuple[subprocess.Popen[bytes], httpx.Client, Path]:
        raise NotImplementedError

    def prepare(self, client: httpx.Client) -> None:
        pass

    def push(self, client: httpx.Client, events: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def count(self, client: httpx.Client) -> int:
        raise NotImplementedError

    def event(self, i: int, t0: datetime) -> dict[str, Any]:
        raise NotImplementedError


class AwServer(Server):
    name, health = "aw-server 0.12.0", "/api/0/info"

    def start(self, work: Path) -> tuple[subprocess.Popen[bytes], httpx.Client, Path]:
        env = dict(os.environ)
        for key, sub in (("XDG_DATA_HOME", "data"), ("XDG_CONFIG_HOME", "config"),
                         ("XDG_CACHE_HOME", "cache"), ("XDG_STATE_HOME", "state")):
            env[key] = str(work / sub)
        logfile = work / "aw.log"
        proc = subprocess.Popen([str(ensure_aw_venv()), "--testing"], env=env,
                                stdout=open(logfile, "wb"), stderr=subprocess.STDOUT)
        return proc, httpx.Client(base_url=AW_BASE, timeout=60), logfile

    def prepare(self, client: httpx.Client) -> None:
        for b in ("bench-single", "bench-batch"):
            client.post(f"/api/0/buckets/{b}", json={"client": "bench", "type": "test",
                                                     "hostname": "bench"}).raise_for_status()

    def event(self, i: int, t0: datetime) -> dict[str, Any]:
        return {"timestamp": (t0 + timedelta(seconds=i)).isoformat(), "duration": 1.0,
                "data": {"app": f"app{i % 20}", "title": f"window title {i}"}}

    def push(self, client: httpx.Client, events: list[dict[str, Any]]) -> None:
        bucket = "bench-single" if len(events) == 1 else "bench-batch"
        client.post(f"/api/0/buckets/{bucket}/events", json=events).raise_for_status()

    def count(self, client: httpx.Client) -> int:
        return sum(int(client.get(f"/api/0/buckets/{b}/events/count").text)
                   for b in ("bench-single", "bench-batch"))


class Memoryd(Server):
    name, health = "memoryd", "/health"

    def start(self, work: Path) -> tuple[subprocess.Popen[bytes], httpx.Client, Path]:
        home = work / "home"
        home.mkdir(parents=True)
        (home / "config.toml").write_text(
            "[api]\nport = 0\n[models]\n" f'dir = "{MODELS_DIR}"\n'
            "[collectors.files]\nenabled = false\n[collectors.browser]\nenabled = false\n"
            "[collectors.shell]\nenabled = false\n")
        env = {**os.environ, "MEMORYD_HOME": str(home)}
        logfile = work / "memoryd.log"
        proc = subprocess.Popen([MEMORYD, "run"], env=env, stdout=open(logfile, "wb"),
                                stderr=subprocess.STDOUT)
        self.data = home / "data"
        deadline = time.monotonic() + 30
        while not (self.data / "api.port").exists():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"memoryd did not start; see {logfile}")
            time.sleep(0.005)
        port = int((self.data / "api.port").read_text())
        token = (self.data / "token").read_text().strip()
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                              headers={"Authorization": f"Bearer {token}"})
        return proc, client, logfile

    def event(self, i: int, t0: datetime) -> dict[str, Any]:
        return {"source": "bench", "kind": "bench.window", "subject": f"app{i % 20}",
                "title": f"window title {i}", "ts": (t0 + timedelta(seconds=i)).isoformat()}

    def push(self, client: httpx.Client, events: list[dict[str, Any]]) -> None:
        client.post("/v1/events", json={"events": events}).raise_for_status()

    def count(self, client: httpx.Client) -> int:
        return int(client.get("/v1/status").json()["journal"]["total"])


def measure(server: Server, work: Path, idle_s: int, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {"server": server.name}
    work.mkdir(parents=True)
    t_spawn = time.perf_counter()
    proc, client, logfile = server.start(work)
    wait_up(proc, client, server.health, logfile)
    out["startup_s"] = round(time.perf_counter() - t_spawn, 3)
    ps = psutil.Process(proc.pid)
    time.sleep(3)
    samples, c0, w0 = [], cpu_s(ps), time.perf_counter()
    while time.perf_counter() - w0 < idle_s:
        samples.append(rss_mb(ps))
        time.sleep(1)
    c1, w1 = cpu_s(ps), time.perf_counter()
    out["idle"] = {"window_s": round(w1 - w0), "rss_mb": round(statistics.mean(samples), 1),
                   "cpu_pct": round(100 * (c1 - c0) / (w1 - w0), 3)}
    log(f"{server.name}: start {out['startup_s']} s, idle {out['idle']}")

    server.prepare(client)
    t0 = datetime.now(UTC) - timedelta(days=2)
    single = [server.event(i, t0) for i in range(n)]
    c0, t = cpu_s(ps), time.perf_counter()
    for e in single:
        server.push(client, [e])
    dt, cpu = time.perf_counter() - t, cpu_s(ps) - c0
    out["one_at_a_time"] = {"events": n, "events_per_s": round(n / dt, 1),
                            "server_cpu_ms_per_event": round(cpu / n * 1000, 2)}
    batched = [server.event(n + i, t0) for i in range(n * 2)]
    c0, t = cpu_s(ps), time.perf_counter()
    for i in range(0, len(batched), BATCH):
        server.push(client, batched[i:i + BATCH])
    dt, cpu = time.perf_counter() - t, cpu_s(ps) - c0
    out[f"batches_of_{BATCH}"] = {"events": len(batched),
                                  "events_per_s": round(len(batched) / dt, 1),
                                  "server_cpu_ms_per_event": round(cpu / len(batched) * 1000,
                                                                   3)}
    out["stored"] = server.count(client)
    out["rss_after_burst_mb"] = rss_mb(ps)
    log(f"{server.name}: {out['one_at_a_time']}, {out[f'batches_of_{BATCH}']}, "
        f"stored {out['stored']}, rss after {out['rss_after_burst_mb']} MB")
    client.close()
    stop(proc)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--idle", type=int, default=60, help="idle window, seconds")
    ap.add_argument("--events", type=int, default=5000, help="events pushed one at a time")
    args = ap.parse_args()
    ensure_aw_venv()
    work = Path(tempfile.mkdtemp(prefix="memoryd-vs-aw-"))
    results = []
    try:
        with Contention() as busy:
            for server in (AwServer(), Memoryd()):
                results.append(measure(server, work / server.name.split()[0], args.idle,
                                       args.events))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    aw, md = results
    ratios = {
        "startup_memoryd_over_aw": round(md["startup_s"] / aw["startup_s"], 2),
        "idle_rss_memoryd_over_aw": round(md["idle"]["rss_mb"] / aw["idle"]["rss_mb"], 2),
        "single_events_per_s_memoryd_over_aw": round(
            md["one_at_a_time"]["events_per_s"] / aw["one_at_a_time"]["events_per_s"], 2),
        "batched_events_per_s_memoryd_over_aw": round(
            md[f"batches_of_{BATCH}"]["events_per_s"] / aw[f"batches_of_{BATCH}"]["events_per_s"],
            2),
    }
    log(json.dumps(ratios))
    log(busy.line())
    write_result("vs_activitywatch", {"machine": machine(), "contention": busy.summary(),
                                      "results": results, "ratios": ratios})
    return 0


if __name__ == "__main__":
    sys.exit(main())
