"""Daemon footprint: startup time, idle and loaded RSS, save-to-searchable latency.

Starts `memoryd --config C run` as a subprocess on a temp data dir whose files root holds
20 small text files (mtimes an hour old, so their backfill chunk is summarized at once),
then measures, in order:

  1. spawn -> /health answering on the Unix socket (target <= 1 s)
  2. the startup backfill runs (worker starts, indexes, summarizes), then the worker
     leaves after idle_unload_seconds; RSS of the daemon's main pid, idle, models
     unloaded (target <= 100 MB); the worker's RSS separately whenever it exists
  3. a new file under the root -> seconds until /v1/memory/search finds its distinctive
     phrase: first save (worker and embedder cold: includes model load), then 3 warm
     saves (target <= 5 s warm)
  4. RSS of daemon + worker once both models are loaded (the saves' chunk summarized;
     the models' load and summary times are read from the daemon's log)
  5. no more API calls: seconds until the worker exits, and the daemon's RSS after it
  6. with --idle-minutes N: N minutes with no API call after that burst (models unloaded):
     the daemon's RSS sampled every 10 s (first, mean, max, last) and its CPU % averaged
     over the window (CPU seconds of the main pid, and of its whole tree, over wall time);
     whether a worker came back during it
  7. SIGTERM: seconds until the daemon exits, and its exit code

idle_unload_seconds is 20 for the whole run (the config is read once at start), so both
the startup backfill's worker and the later one show the idle exit. Everything else is
memoryd's default config; HOME is an empty temp folder, so the shell and browser
collectors run but find nothing. Only loopback is used (the Unix socket; /health on
127.0.0.1 is checked once).

Run:  /root/.local/share/memoryd/venv/bin/python bench/daemon_footprint.py [--idle-minutes 10]
          [--startups 5]   (5 extra fresh start-ups to /health first: median wall and CPU s)
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import Contention, cpu_seconds, machine, write_result

VENV_BIN = Path(sys.executable).parent
MEMORYD = str(VENV_BIN / "memoryd") if (VENV_BIN / "memoryd").exists() else "memoryd"
MODELS_DIR = "/root/.cache/memoryd/models-dev"
IDLE_UNLOAD = 20
MB = 1024 * 1024
TARGETS = {"health_s": 1.0, "idle_rss_mb": 100.0, "warm_save_s": 5.0}
WARM_SAVES = 3


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Daemon:
    def __init__(self, tmp: Path) -> None:
        self.data = tmp / "data"
        self.root = tmp / "root"
        self.cfg = tmp / "config.toml"
        self.logfile = tmp / "memoryd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.last_api_call = time.monotonic()
        self.leftover_children: list[str] = []

    def write_config(self) -> None:
        self.cfg.write_text(
            f'data_dir = "{self.data}"\n\n'
            f'[collectors.files]\nroots = ["{self.root}"]\n\n'
            "[api]\nport = 0\n\n"
            f'[models]\ndir = "{MODELS_DIR}"\nthreads = {os.cpu_count() or 2}\n'
            f"idle_unload_seconds = {IDLE_UNLOAD}\n\n"
            # The benchmark box is shared: summaries must not wait for a quiet CPU (the
            # polite scheduler would defer them for minutes), or the burst never ends.
            "[compaction]\nyield_cpu_percent = 0\nyield_on_battery = false\n")

    def spawn(self) -> None:
        # An empty HOME: the shell and browser collectors run (as they would for a user)
        # but find no history, so only the files root feeds the daemon.
        home = self.root.parent / "home"
        home.mkdir(exist_ok=True)
        env = {**os.environ, "HOME": str(home), "HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen([MEMORYD, "--config", str(self.cfg), "run"], env=env,
                                     stdin=subprocess.DEVNULL, stdout=self.logfile.open("wb"),
                                     stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def client(self, timeout: float = 60) -> httpx.Client:
        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self.data / "memoryd.sock")),
                            base_url="http://localhost", timeout=timeout)

    def get(self, path: str, **params: Any) -> Any:
        token = (self.data / "token").read_text().strip()
        with self.client() as c:
            r = c.get(path, params=params, headers={"Authorization": f"Bearer {token}"})
        self.last_api_call = time.monotonic()
        r.raise_for_status()
        return r.json()

    def health_ok(self) -> bool:
        try:
            with self.client(timeout=2) as c:
                return c.get("/health").status_code == 200
        except (httpx.TransportError, OSError):
            return False

    def processes(self) -> dict[str, psutil.Process]:
        """The main pid, and its children by role (worker, resource tracker)."""
        main = psutil.Process(self.pid)
        out = {"main": main}
        for child in main.children(recursive=True):
            try:
                cmd = " ".join(child.cmdline())
            except psutil.Error:
                continue
            role = "resource_tracker" if "resource_tracker" in cmd else "worker"
            out[role] = child
        return out

    def rss(self) -> dict[str, dict[str, float]]:
        """RSS and PSS (MB) of each process now; PSS splits shared pages fairly."""
        out = {}
        for role, p in self.processes().items():
            try:
                info = p.memory_full_info()
                out[role] = {"pid": p.pid, "rss_mb": round(info.rss / MB, 1),
                             "pss_mb": round(getattr(info, "pss", 0) / MB, 1)}
            except psutil.Error:
                pass
        return out

    def journal_counts(self) -> dict[int, int]:
        """Read the journal directly (read-only), so the worker's idle clock is not touched."""
        db = sqlite3.connect(f"file:{self.data / 'journal.sqlite3'}?mode=ro", uri=True,
                             timeout=5)
        try:
            return dict(db.execute("SELECT stage, COUNT(*) FROM events GROUP BY stage"))
        finally:
            db.close()

    def stop(self) -> tuple[float, int | None]:
        """SIGTERM the daemon; after 60 s, SIGKILL it and any child it left behind."""
        assert self.proc is not None
        try:
            children = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            children = []
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = None
        elapsed = time.monotonic() - started
        # Children read their pipe to the daemon until EOF: give them a moment, then end
        # any that outlived the daemon (a worker left running would be a bug).
        _, alive = psutil.wait_procs(children, timeout=5)
        self.leftover_children = [" ".join(c.cmdline()[-3:])[:60] for c in alive]
        for child in alive:
            log(f"child {child.pid} outlived the daemon by 5 s; killing it")
            child.kill()
        return elapsed, code


def sample_rss(d: Daemon, seconds: float = 3.0) -> dict[str, dict[str, float]]:
    """Median RSS/PSS per role over a few samples (the box is noisy)."""
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        samples.append(d.rss())
        time.sleep(0.5)
    roles = {r for s in samples for r in s}
    out = {}
    for role in sorted(roles):
        got = [s[role] for s in samples if role in s]
        out[role] = {"pid": got[-1]["pid"],
                     "rss_mb": round(statistics.median(g["rss_mb"] for g in got), 1),
                     "pss_mb": round(statistics.median(g["pss_mb"] for g in got), 1)}
    return out


def wait_for(cond: Any, timeout: float, step: float = 0.25, what: str = "") -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if cond():
            return time.monotonic() - started
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def save_and_find(d: Daemon, name: str, phrase: str) -> float:
    """Write a file under the root; return seconds until search finds the phrase."""
    path = d.root / "notes" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"Meeting notes.\nThe codename for the next release is {phrase}.\n"
                    "Remember to tell the release team before Friday.\n")
    saved = time.monotonic()

    def found() -> bool:
        hits = d.get("/v1/memory/search", q=phrase, k=5)["results"]
        return any(phrase in h["text"] for h in hits)

    wait_for(found, 90, what=f"search to find {phrase!r}")
    return time.monotonic() - saved


def worker_alive(d: Daemon) -> bool:
    return "worker" in d.processes()


def startups(n: int) -> dict[str, Any]:
    """Start a fresh daemon n times (empty data dir, nothing to index) and stop it as soon
    as /health answers: wall seconds, and the CPU seconds the daemon used until then (less
    swayed by a busy box than the wall time)."""
    walls, cpus = [], []
    for _ in range(n):
        with tempfile.TemporaryDirectory(prefix="memoryd-start-") as tmpdir:
            d = Daemon(Path(tmpdir))
            d.root.mkdir()
            d.write_config()
            started = time.monotonic()
            d.spawn()
            assert d.proc is not None
            while not d.health_ok():
                if d.proc.poll() is not None or time.monotonic() - started > 60:
                    raise RuntimeError(f"no /health: see {d.logfile.read_text()[-2000:]}")
                time.sleep(0.01)
            walls.append(time.monotonic() - started)
            cpus.append(cpu_seconds([psutil.Process(d.pid)]))
            d.stop()
    return {"n": n, "wall_s": [round(w, 2) for w in walls],
            "wall_s_median": round(statistics.median(walls), 2),
            "cpu_s": [round(c, 2) for c in cpus], "cpu_s_median": round(statistics.median(cpus), 2)}


def idle_window(d: Daemon, minutes: float, every: float = 10.0) -> dict[str, Any]:
    """Sample the idle daemon for `minutes` without calling its API (a call would wake the
    worker): RSS of the main pid and CPU % of the main pid and of its whole tree."""
    main = psutil.Process(d.pid)

    def tree() -> list[psutil.Process]:
        try:
            return [main, *main.children(recursive=True)]
        except psutil.Error:
            return [main]

    started = time.monotonic()
    main0, tree0 = cpu_seconds([main]), cpu_seconds(tree())
    rss: list[float] = []
    pss: list[float] = []
    tracker: list[float] = []
    worker_seen = 0
    while time.monotonic() - started < minutes * 60:
        time.sleep(every)
        now = d.rss()
        rss.append(now["main"]["rss_mb"])
        pss.append(now["main"]["pss_mb"])
        if "resource_tracker" in now:
            tracker.append(now["resource_tracker"]["rss_mb"])
        worker_seen += "worker" in now
        if len(rss) % 6 == 0:
            log(f"idle {len(rss) * every / 60:.0f} min: main RSS {rss[-1]} MB")
    wall = time.monotonic() - started
    return {"minutes": round(wall / 60, 2), "samples": len(rss), "every_s": every,
            "main_rss_mb": {"first": rss[0], "mean": round(statistics.mean(rss), 1),
                            "max": max(rss), "last": rss[-1]},
            "main_pss_mb_mean": round(statistics.mean(pss), 1),
            "resource_tracker_rss_mb_mean": round(statistics.mean(tracker), 1) if tracker
            else None,
            "main_cpu_pct_mean": round((cpu_seconds([main]) - main0) / wall * 100, 3),
            "tree_cpu_pct_mean": round((cpu_seconds(tree()) - tree0) / wall * 100, 3),
            "samples_with_a_worker": worker_seen}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle-minutes", type=float, default=0,
                    help="after the burst, watch the idle daemon this long (0: skip)")
    ap.add_argument("--startups", type=int, default=0,
                    help="also time N fresh start-ups to /health (median wall and CPU s)")
    args = ap.parse_args()
    res: dict[str, Any] = {}
    box = machine()
    with Contention() as meter, tempfile.TemporaryDirectory(prefix="memoryd-bench-") as tmpdir:
        d = Daemon(Path(tmpdir))
        d.root.mkdir()
        hour_ago = time.time() - 3600
        for i in range(20):
            f = d.root / f"doc{i:02d}.md"
            f.write_text(f"# Document {i}\n\nPlanning notes for milestone {i}: "
                         f"review the journal, index the files, check search quality.\n")
            os.utime(f, (hour_ago + i, hour_ago + i))
        d.write_config()
        if args.startups:
            res["startups"] = startups(args.startups)
            log(f"{args.startups} start-ups to /health: median {res['startups']['wall_s_median']}"
                f" s wall, {res['startups']['cpu_s_median']} s CPU")
        try:
            run_phases(d, res, args.idle_minutes)
        except BaseException:
            print("--- daemon log (tail) ---")
            print("\n".join(d.logfile.read_text(errors="replace").splitlines()[-40:]))
            if d.proc and d.proc.poll() is None:
                d.stop()
            raise
        log_text = d.logfile.read_text(errors="replace")
    res["model_loads_from_log"] = [
        {"at": m.group(1), "what": m.group(2), "seconds": float(m.group(3))}
        for m in re.finditer(r"^\S+ (\S+) .*?loaded (.+?) in ([\d.]+) s", log_text, re.MULTILINE)]
    res["summaries_from_log"] = [
        {"events": int(m.group(1)), "seconds": float(m.group(2)), "tokens": int(m.group(3))}
        for m in re.finditer(r"summarized (\d+) \S+ events in ([\d.]+) s \((\d+) tokens\)",
                             log_text)]
    res["warnings_in_log"] = [ln for ln in log_text.splitlines()
                              if " WARNING " in ln or " ERROR " in ln or "Traceback" in ln]
    print(meter.line())
    report(res, box, meter.summary())
    return 0


def run_phases(d: Daemon, res: dict[str, Any], idle_minutes: float = 0) -> None:
    # 1. spawn -> /health on the Unix socket
    started = time.monotonic()
    d.spawn()
    assert d.proc is not None
    while not d.health_ok():
        if d.proc.poll() is not None:
            raise RuntimeError(f"memoryd exited with {d.proc.returncode} before /health")
        if time.monotonic() - started > 60:
            raise TimeoutError("no /health within 60 s")
        time.sleep(0.01)
    res["health_s"] = round(time.monotonic() - started, 3)
    res["health_cpu_s"] = round(cpu_seconds([psutil.Process(d.pid)]), 2)
    res["rss_at_health"] = d.rss()
    port = int((d.data / "api.port").read_text())
    tcp = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code
    res["tcp_health_status"] = tcp
    log(f"/health on the Unix socket after {res['health_s']:.3f} s "
        f"(main RSS {res['rss_at_health']['main']['rss_mb']} MB; TCP :{port} -> {tcp})")

    # 2. startup backfill: worker comes, indexes + summarizes the 20 files, then leaves
    t0 = time.monotonic()
    wait_for(lambda: worker_alive(d), 30, what="the worker to start for the backfill")
    peak: dict[str, Any] = {}

    def backfill_done() -> bool:
        rss = d.rss()
        if "worker" in rss and rss["worker"]["rss_mb"] > peak.get("worker", {}).get("rss_mb", 0):
            peak.update(rss)
        c = d.journal_counts()
        return c.get(2, 0) == 20 and not c.get(0) and not c.get(1)

    wait_for(backfill_done, 400, 0.5, "the backfill")
    res["startup_backfill_s"] = round(time.monotonic() - t0, 1)
    res["rss_peak_during_backfill"] = peak
    log(f"startup backfill indexed + summarized 20 files in {res['startup_backfill_s']} s")
    res["startup_worker_exit_after_backfill_s"] = round(
        wait_for(lambda: not worker_alive(d), 90, 0.5, "the idle worker to exit"), 1)
    log(f"worker exited {res['startup_worker_exit_after_backfill_s']} s after the backfill")
    res["rss_idle"] = sample_rss(d)
    log(f"idle: main RSS {res['rss_idle']['main']['rss_mb']} MB, "
        f"children {[r for r in res['rss_idle'] if r != 'main']}")

    # 3. first save (cold: worker + embedder load), then warm saves
    res["cold_save_s"] = round(save_and_find(d, "cold.txt", "Marmalade Zeppelin 4471"), 2)
    log(f"cold save searchable after {res['cold_save_s']} s")
    res["warm_saves_s"] = []
    for i in range(WARM_SAVES):
        time.sleep(1.0)
        s = save_and_find(d, f"warm{i}.txt", f"Quartz Pelican {9000 + i}")
        res["warm_saves_s"].append(round(s, 2))
        log(f"warm save {i + 1} searchable after {s:.2f} s")
    res["warm_save_median_s"] = round(statistics.median(res["warm_saves_s"]), 2)
    res["rss_embedder_only"] = sample_rss(d)  # the summary comes ~20 s after the last save

    # 4. both models loaded: the saves' chunk is summarized ~20 s after the last save (the
    # summary embeds its text last, so both models are in memory right after). Watch the
    # journal directly: API calls would reset the worker's idle clock.
    saves = 1 + WARM_SAVES

    def summarized() -> bool:
        return d.journal_counts().get(2, 0) >= 20 + saves

    res["wait_for_summary_s"] = round(wait_for(summarized, 150, 0.5, "the saves' summary"), 1)
    res["rss_loaded"] = sample_rss(d, seconds=2.0)
    res["models_loaded_per_status"] = d.get("/v1/status").get("engine", {}).get("models_loaded")
    loaded_total = sum(v["rss_mb"] for v in res["rss_loaded"].values())
    log(f"models loaded: main {res['rss_loaded']['main']['rss_mb']} MB + worker "
        f"{res['rss_loaded'].get('worker', {}).get('rss_mb')} MB (all {loaded_total:.0f} MB)")

    # 5. no API calls: the worker should leave after idle_unload_seconds
    quiet_from = d.last_api_call
    wait_for(lambda: not worker_alive(d), 90, 0.5, "the worker to exit when idle")
    res["worker_exit_after_last_call_s"] = round(time.monotonic() - quiet_from, 1)
    res["rss_after_unload"] = sample_rss(d)
    log(f"worker exited {res['worker_exit_after_last_call_s']} s after the last call; "
        f"main RSS {res['rss_after_unload']['main']['rss_mb']} MB")

    # 6. a long idle window after the burst, models unloaded
    if idle_minutes:
        log(f"watching the idle daemon for {idle_minutes:g} min (no API calls)")
        res["idle_window"] = idle_window(d, idle_minutes)
        w = res["idle_window"]
        log(f"idle {w['minutes']} min: main RSS mean {w['main_rss_mb']['mean']} MB "
            f"(max {w['main_rss_mb']['max']}), CPU {w['main_cpu_pct_mean']} % "
            f"(tree {w['tree_cpu_pct_mean']} %)")

    # 7. SIGTERM
    res["sigterm_exit_s"], res["exit_code"] = d.stop()
    res["sigterm_exit_s"] = round(res["sigterm_exit_s"], 2)
    res["socket_removed"] = not (d.data / "memoryd.sock").exists()
    res["children_alive_5s_after_exit"] = d.leftover_children
    log(f"SIGTERM: exited with {res['exit_code']} after {res['sigterm_exit_s']} s")


def _idle_rows(res: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    w = res.get("idle_window")
    if not w:
        return []
    r = w["main_rss_mb"]
    return [
        (f"main RSS over {w['minutes']:g} idle min (first/mean/max/last), MB",
         f"{r['first']:.0f} / {r['mean']:.0f} / {r['max']:.0f} / {r['last']:.0f}", "<= 100 MB",
         r["max"] <= TARGETS["idle_rss_mb"]),
        (f"main CPU over {w['minutes']:g} idle min (tree)",
         f"{w['main_cpu_pct_mean']:.2f} % ({w['tree_cpu_pct_mean']:.2f} %)", "", None),
        ("worker during the idle window", f"{w['samples_with_a_worker']} of {w['samples']} "
         "samples", "none", w["samples_with_a_worker"] == 0),
    ]


def report(res: dict[str, Any], box: dict[str, Any], contention: dict[str, Any]) -> None:
    def mb(section: str, role: str) -> str:
        v = res.get(section, {}).get(role)
        return f"{v['rss_mb']:.0f} (PSS {v['pss_mb']:.0f})" if v else "-"

    loaded = res["rss_loaded"]["main"]["rss_mb"] + res["rss_loaded"].get("worker", {}).get(
        "rss_mb", 0)
    rows = [
        ("spawn -> /health (Unix socket)", f"{res['health_s']:.2f} s", "<= 1 s",
         res["health_s"] <= TARGETS["health_s"]),
        ("  CPU the daemon used until then", f"{res['health_cpu_s']:.2f} s", "", None),
        *([(f"spawn -> /health, median of {res['startups']['n']} fresh starts",
            f"{res['startups']['wall_s_median']:.2f} s wall, "
            f"{res['startups']['cpu_s_median']:.2f} s CPU", "<= 1 s",
            res["startups"]["wall_s_median"] <= TARGETS["health_s"])]
          if "startups" in res else []),
        ("main RSS at /health, MB", mb("rss_at_health", "main"), "", None),
        ("main RSS idle (worker gone), MB", mb("rss_idle", "main"), "<= 100 MB",
         res["rss_idle"]["main"]["rss_mb"] <= TARGETS["idle_rss_mb"]),
        ("worker RSS idle, MB", mb("rss_idle", "worker"), "none", "worker" not in res["rss_idle"]),
        ("resource_tracker RSS idle, MB", mb("rss_idle", "resource_tracker"), "", None),
        ("startup backfill (20 files) indexed+summarized", f"{res['startup_backfill_s']} s",
         "", None),
        ("worker RSS peak during backfill, MB", mb("rss_peak_during_backfill", "worker"), "",
         None),
        ("save -> searchable, first (cold, loads models)", f"{res['cold_save_s']:.2f} s", "",
         None),
        (f"save -> searchable, warm (median of {len(res['warm_saves_s'])})",
         f"{res['warm_save_median_s']:.2f} s {res['warm_saves_s']}", "<= 5 s",
         res["warm_save_median_s"] <= TARGETS["warm_save_s"]),
        ("worker RSS, embedder + store only, MB", mb("rss_embedder_only", "worker"), "", None),
        ("main RSS, models loaded, MB", mb("rss_loaded", "main"), "", None),
        ("worker RSS, models loaded, MB", mb("rss_loaded", "worker"), "", None),
        ("  /v1/status models_loaded then", str(res["models_loaded_per_status"]), "", None),
        ("main + worker RSS, models loaded, MB", f"{loaded:.0f}", "", None),
        (f"worker exit after last call (idle_unload={IDLE_UNLOAD} s)",
         f"{res['worker_exit_after_last_call_s']} s", "", None),
        ("main RSS after worker exit, MB", mb("rss_after_unload", "main"), "<= 100 MB",
         res["rss_after_unload"]["main"]["rss_mb"] <= TARGETS["idle_rss_mb"]),
        ("worker after idle", "gone" if "worker" not in res["rss_after_unload"] else "STILL THERE",
         "gone", "worker" not in res["rss_after_unload"]),
        *_idle_rows(res),
        ("SIGTERM -> exit", f"{res['sigterm_exit_s']:.2f} s, code {res['exit_code']}", "code 0",
         res["exit_code"] == 0),
        ("children alive 5 s after the daemon exited",
         ", ".join(res["children_alive_5s_after_exit"]) or "none", "none",
         not res["children_alive_5s_after_exit"]),
    ]
    print()
    w = max(len(r[0]) for r in rows)
    print(f"{'measure':{w}s}  {'value':34s} {'target':10s} ok")
    for name, value, target, ok in rows:
        print(f"{name:{w}s}  {value:34s} {target:10s} "
              f"{'' if ok is None else ('yes' if ok else 'NO')}")
    for m in res["model_loads_from_log"]:
        print(f"  log {m['at']}: loaded {m['what']} in {m['seconds']} s")
    for m in res["summaries_from_log"]:
        print(f"  log: summarized {m['events']} events in {m['seconds']} s ({m['tokens']} tokens)")
    for ln in res["warnings_in_log"]:
        print(f"  log: {ln}")
    write_result("daemon_footprint", {
        "machine": box, "contention": contention,
        "params": {"idle_unload_seconds": IDLE_UNLOAD, "root_files": 20,
                   "warm_saves": WARM_SAVES, "models_dir": MODELS_DIR},
        "targets": TARGETS, "results": res})


if __name__ == "__main__":
    sys.exit(main())
