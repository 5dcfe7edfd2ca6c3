"""Shared bits of the benchmarks: machine facts, a CPU-contention meter, writing results.

The benchmark box is shared: other processes (test suites, builds) may use the same two
cores. `Contention` samples, every two seconds, how much CPU processes outside this
benchmark's own process tree use, so each result says how quiet the machine was.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import psutil

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def commit() -> str:
    """The memoryd commit measured ("+dirty" if its tracked code has local changes)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True,
                              text=True, check=False).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "daemon", "collectors",
                "models")
    return head + ("+dirty" if dirty else "")


def machine() -> dict[str, Any]:
    return {"commit": commit(), "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(), "mem_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}


class Contention:
    """Average CPU % (100 = one core) used by processes outside our tree while running."""

    def __init__(self, every: float = 2.0) -> None:
        self.every = every
        self.samples: list[float] = []
        self.busiest: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._procs: dict[int, psutil.Process] = {}

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _ours(self) -> set[int]:
        me = psutil.Process()
        return {me.pid} | {c.pid for c in me.children(recursive=True)}

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            ours = self._ours()
            total = 0.0
            for p in psutil.process_iter(["name", "cmdline"]):
                proc = self._procs.setdefault(p.pid, p)
                try:
                    pct = proc.cpu_percent(None)  # since the previous sample (0.0 the first time)
                except psutil.Error:
                    continue
                if p.pid in ours or pct < 1:
                    continue
                total += pct
                name = " ".join((p.info.get("cmdline") or [p.info.get("name") or "?"])[:4])[:80]
                self.busiest[name] = max(self.busiest.get(name, 0.0), pct)
            self.samples.append(total)

    def summary(self) -> dict[str, Any]:
        s = self.samples[1:] or [0.0]  # the first sample only primes cpu_percent
        top = sorted(self.busiest.items(), key=lambda kv: -kv[1])[:3]
        return {"other_cpu_pct_mean": round(statistics.mean(s), 1),
                "other_cpu_pct_max": round(max(s), 1),
                "busiest_others": [{"cmd": k, "max_cpu_pct": round(v)} for k, v in top],
                "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]}

    def line(self) -> str:
        s = self.summary()
        return (f"other processes used {s['other_cpu_pct_mean']}% CPU on average "
                f"(max {s['other_cpu_pct_max']}%; 200% = both cores) during this run")


def write_result(name: str, data: dict[str, Any]) -> Path:
    data = {"benchmark": name, "when": datetime.now(UTC).isoformat(timespec="seconds"), **data}
    RESULTS.mkdir(parents=True, exist_ok=True)
    dest = RESULTS / f"{name}.json"
    dest.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {dest.relative_to(ROOT)}")
    return dest


def _busy_seconds() -> float:
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)  # steal counts as busy: it is contention


class OtherCpu:
    """CPU % used outside this process during a `with` block (for in-process benchmarks).

    100 = one core. On a 2-core box, 100 means half the machine was busy with someone else.
    """

    def __enter__(self) -> Self:
        self._me = psutil.Process()
        self._t0, self._busy0 = time.monotonic(), _busy_seconds()
        c = self._me.cpu_times()
        self._own0 = c.user + c.system
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.monotonic() - self._t0
        c = self._me.cpu_times()
        own = c.user + c.system - self._own0
        self.pct = max(0.0, (_busy_seconds() - self._busy0 - own) / wall * 100) if wall else 0.0


def wait_quiet(threshold: float = 20.0, max_wait: float = 20.0) -> float:
    """Wait (up to max_wait s) until the box's CPU use is under threshold %; return it."""
    deadline = time.monotonic() + max_wait
    while True:
        pct = psutil.cpu_percent(interval=1.0) * (os.cpu_count() or 1)
        if pct < threshold or time.monotonic() >= deadline:
            return pct


def cpu_seconds(procs: list[psutil.Process]) -> float:
    """User + system CPU seconds of these processes (gone ones count 0)."""
    total = 0.0
    for p in procs:
        try:
            c = p.cpu_times()
            total += c.user + c.system
        except psutil.Error:
            pass
    return total


def stop_all(procs: list[subprocess.Popen[bytes]], seconds: float = 30) -> None:
    """Terminate the processes (last started first), killing any that will not stop."""
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(seconds)
            except subprocess.TimeoutExpired:
                proc.kill()
