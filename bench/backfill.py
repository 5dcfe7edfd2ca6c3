"""Backfill at scale (issue 17): a heavy user's 90-day home, a real daemon on it.

Builds a home with the eval kit's `heavy_home.py` (DAYS x PER_DAY shell and browser events
in real bash/zsh/fish/Chromium/Firefox files, plus copies of real source trees), writes a
memoryd config whose collectors read only that home (HOME, XDG dirs and MEMORYD_HOME point
into the work dir, so the machine's own history is never read), starts `memoryd run` and,
every --every seconds until everything is done or --deadline minutes have passed, samples:

  - /v1/status: journal counts (new/indexed/summarized/total) and each stage's backlog,
    rate and ETA, the pipeline's CPU budget and use
  - the daemon tree's RSS (sum over the main pid and all its children), its PSS, its
    distinct resident pages (bench/pages.py: each page once; root only) and CPU seconds
  - every --store-every seconds: the last 7 days' events by stage (the journal, read-only)
    and their day digests (the LanceDB store, opened read-only as any reader opens it)

A thread beside it sends an API search (/v1/memory/search, fixed queries rotated) every
--search-every seconds and records each latency.

Reported against issue 17's targets: all searchable (journal `new` = 0 once the collectors
settled) <= 10 min; last 7 days summarized and their day digests written <= 60 min; the
daemon tree's CPU share after that point inside [compaction] max_cpu_percent; peak tree
RSS <= 1.2 GB (reported both as the summed RSS and as the tree's distinct pages);
API search p95 <= 300 ms while the backfill runs.

Run:  PY bench/backfill.py [--eval-kit ../shared/eval] [--days 90] [--deadline 60]
The eval kit lives outside this repository (--eval-kit, default ../shared/eval beside the
checkout); --home DIR reuses a home heavy_home.py already built.
"""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import tomli_w

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import ROOT, Contention, machine, write_result
from bench.pages import tree_resident_mb

MB = 1024 * 1024
TARGETS = {"searchable_s": 600.0, "last7_done_s": 3600.0, "peak_rss_mb": 1200.0,
           "search_p95_ms": 300.0}
QUERIES = ["what command was failing in the ranker tests",
           "which page did I read about LanceDB hybrid search",
           "what port does the local Qwen endpoint listen on",
           "which HubSpot help page did I read about how dates are stored",
           "fastapi dependency injection request body",
           "where did I save the trial run of the CRM push"]
SUMMARIZED = 2  # daemon/intake/journal.py's stage numbers: 0 new, 1 indexed, 2 summarized


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- the home and the config ------------------------------------------------------------

def default_sources() -> list[str]:
    """Real source trees: this repo's daemon/ and an installed library (fastapi)."""
    import fastapi

    return [str(ROOT / "daemon"), str(Path(fastapi.__file__).parent)]


def build_home(kit: Path, out: Path, days: int, per_day: int, src: list[str]) -> None:
    cmd = [sys.executable, str(kit / "heavy_home.py"), str(out), "--days", str(days),
           "--per-day", str(per_day), "--src", *src]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def write_config(work: Path, manifest: dict[str, Any], models_dir: str, polite: bool) -> Path:
    p = manifest["paths"]
    compaction: dict[str, Any] = {}
    if not polite:  # the box is shared: other jobs' CPU is not the user's, do not yield to it
        compaction = {"yield_cpu_percent": 0, "yield_on_battery": False}
    cfg = {"data_dir": str(work / "data"), "api": {"port": 0},
           "collectors": {
               "files": {"roots": [p["files_root"]]},
               "browser": {"history_files": [p["chromium_history"], p["firefox_places"]]},
               "shell": {"history_files": [p["bash_history"], p["zsh_history"],
                                           p["fish_history"]]}},
           "models": {"dir": models_dir}}
    if compaction:
        cfg["compaction"] = compaction
    path = work / "memoryd.toml"
    path.write_text(tomli_w.dumps(cfg))
    return path


def private_env(work: Path) -> dict[str, str]:
    """HOME and XDG dirs inside the work dir: memoryd's discovery finds only the fixtures."""
    import os

    home = work / "home"
    home.mkdir(exist_ok=True)
    return {**os.environ, "HOME": str(home), "MEMORYD_HOME": str(home / ".memoryd"),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "XDG_STATE_HOME": str(home / ".local" / "state"), "HF_HUB_OFFLINE": "1"}


# -- the daemon ---------------------------------------------------------------------------

class Daemon:
    def __init__(self, work: Path, config: Path) -> None:
        self.work, self.config = work, config
        self.data = work / "data"
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: httpx.Client | None = None

    def start(self, env: dict[str, str], timeout: float = 300) -> None:
        logf = (self.work / "daemon.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon.cli", "--config", str(self.config), "run"],
            env={**env, "PYTHONPATH": str(ROOT)}, cwd=ROOT, stdin=subprocess.DEVNULL,
            stdout=logf, stderr=subprocess.STDOUT)
        sock, token = self.data / "memoryd.sock", self.data / "token"
        deadline = time.monotonic() + timeout
        while not (sock.exists() and token.exists()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the daemon did not start; see {self.work / 'daemon.log'}")
            time.sleep(0.2)
        self.client = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://localhost",
            timeout=120, headers={"Authorization": f"Bearer {token.read_text().strip()}"})

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def get(self, path: str, **params: Any) -> Any:
        assert self.client is not None
        r = self.client.get(path, params=params)
        r.raise_for_status()
        return r.json()

    def stop(self) -> int | None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            for child in psutil.Process(self.pid).children(recursive=True):
                child.kill()
            self.proc.kill()
            return None


def smaps_rollup(pid: int) -> dict[str, float]:
    """RSS, PSS and anonymous MB of one process (/proc/PID/smaps_rollup)."""
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("Rss", "Pss", "Anonymous"):
                    out[key.lower()] = round(int(rest.split()[0]) / 1024, 1)
    except OSError:
        pass
    return out


def mappings(pid: int, top: int = 8) -> dict[str, Any]:
    """Where one process's resident MB are: anonymous memory by kind (heap, unnamed
    mappings, stacks) and the `top` files by resident MB (/proc/PID/smaps)."""
    files: dict[str, float] = {}
    anon: dict[str, float] = {}
    name = ""
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                head = line.split(None, 5)
                if head and "-" in head[0] and len(head) >= 5 and ":" in head[3]:
                    name = head[5].strip() if len(head) > 5 else ""
                elif line.startswith("Rss:"):
                    kb = int(line.split()[1]) / 1024
                    if name.startswith("/") and not name.startswith("/dev/"):
                        key = name.rsplit("/", 1)[-1]
                        files[key] = files.get(key, 0.0) + kb
                elif line.startswith("Anonymous:"):
                    kb = int(line.split()[1]) / 1024
                    key = name if name.startswith("[") else ("file CoW" if name else "unnamed")
                    anon[key] = anon.get(key, 0.0) + kb
    except OSError:
        return {}
    best = sorted(files.items(), key=lambda kv: -kv[1])[:top]
    return {"anon": {k: round(v, 1) for k, v in sorted(anon.items(), key=lambda kv: -kv[1])
                     if v >= 1},
            "files": {k: round(v, 1) for k, v in best},
            "files_total": round(sum(files.values()), 1)}


def tree_memory(pid: int) -> dict[str, Any]:
    """Each process of the tree by role (daemon, memoryd-reader, memoryd-engine): RSS,
    PSS (shared pages split between the processes mapping them, so the tree's PSS counts
    each page once) and anonymous MB; the tree's PSS, and the MB of its distinct resident
    pages (bench/pages.py: what the tree holds in RAM, no page counted twice)."""
    main = psutil.Process(pid)
    by: dict[str, dict[str, float]] = {}
    for p in [main, *main.children(recursive=True)]:
        try:
            name = "daemon" if p is main else (p.cmdline() or ["?"])[-1]
        except psutil.Error:
            continue
        by[name if name not in by else f"{name}-{p.pid}"] = {**smaps_rollup(p.pid),
                                                             "pid": p.pid}
    return {"pss_mb": round(sum(m.get("pss", 0.0) for m in by.values()), 1),
            "unique_mb": tree_resident_mb([int(m["pid"]) for m in by.values()]),
            "by_process": by}


def tree_usage(pid: int) -> tuple[float, float, int]:
    """(RSS MB summed over the tree, CPU seconds of the tree incl. reaped children, procs)."""
    main = psutil.Process(pid)
    procs = [main, *main.children(recursive=True)]
    rss = cpu = 0.0
    for p in procs:
        try:
            rss += p.memory_info().rss
            t = p.cpu_times()
            cpu += t.user + t.system + (t.children_user + t.children_system if p is main else 0)
        except psutil.Error:
            continue
    return rss / MB, cpu, len(procs)


# -- the last 7 days: journal stages and day digests ----------------------------------------

def last7_cutoff(now: datetime) -> datetime:
    """Local midnight six days before today: today and the 6 days before it."""
    local = now.astimezone()
    return (local - timedelta(days=6)).replace(hour=0, minute=0, second=0, microsecond=0)


def last7_journal(data: Path, cutoff: datetime) -> dict[str, Any]:
    db = sqlite3.connect(f"file:{data / 'journal.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute("SELECT stage, COUNT(*), MIN(ts), MAX(ts) FROM events WHERE ts >= ? "
                          "AND source IN ('shell', 'browser') GROUP BY stage",
                          (cutoff.timestamp(),)).fetchall()
        stamps = db.execute("SELECT ts FROM events WHERE ts >= ? AND source IN "
                            "('shell', 'browser')", (cutoff.timestamp(),)).fetchall()
    finally:
        db.close()
    by = {stage: n for stage, n, _, _ in rows}
    days = {datetime.fromtimestamp(ts, UTC).astimezone().date().isoformat() for (ts,) in stamps}
    return {"events": sum(by.values()), "summarized": by.get(SUMMARIZED, 0),
            "days": sorted(days)}


def store_digests(data: Path) -> dict[str, Any]:
    """Day digest ids and the count of memories by level, from a read-only open."""
    import lancedb

    try:
        table = lancedb.connect(str(data / "store")).open_table("memories")
    except Exception:  # not created yet: no memory written
        return {"day_ids": [], "levels": {}}
    rows = table.search().select(["id", "level"]).limit(None).to_list()
    levels: dict[str, int] = {}
    for r in rows:
        levels[r["level"]] = levels.get(r["level"], 0) + 1
    return {"day_ids": sorted(r["id"] for r in rows if r["level"] == "day"), "levels": levels}


def last7_done(journal: dict[str, Any], store: dict[str, Any]) -> bool:
    """Every last-7-days history event summarized, and each of those days has its digest
    (today is excluded: its digest is rewritten all day long as new events come)."""
    today = datetime.now().astimezone().date().isoformat()
    want = {f"day-{d}" for d in journal["days"] if d != today}
    have = {i[:14] for i in store["day_ids"]}
    return bool(journal["events"]) and journal["summarized"] == journal["events"] \
        and want <= have


# -- searches beside the backfill -----------------------------------------------------------

@dataclass
class Searcher:
    daemon: Daemon
    every: float
    t0: float
    samples: list[dict[str, Any]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        i = 0
        while not self._stop.wait(self.every):
            q = QUERIES[i % len(QUERIES)]
            i += 1
            t = time.perf_counter()
            try:
                n = len(self.daemon.get("/v1/memory/search", q=q, k=10)["results"])
                err = None
            except (httpx.HTTPError, OSError) as exc:
                n, err = 0, type(exc).__name__
            self.samples.append({"t": round(time.monotonic() - self.t0, 1), "q": q,
                                 "ms": round((time.perf_counter() - t) * 1000, 1),
                                 "results": n, "error": err})

    def stop(self) -> None:
        self._stop.set()


# -- the sampling loop ---------------------------------------------------------------------

@dataclass
class Run:
    daemon: Daemon
    t0: float
    cutoff: datetime
    samples: list[dict[str, Any]] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)
    last7: dict[str, Any] = field(default_factory=dict)

    def sample(self, check_store: bool) -> dict[str, Any]:
        t = round(time.monotonic() - self.t0, 1)
        st = self.daemon.get("/v1/status")
        rss, cpu, nprocs = tree_usage(self.daemon.pid)
        pipe = st.get("pipeline", {})
        s: dict[str, Any] = {"t": t, "journal": st["journal"], "stages": pipe.get("stages"),
                             "cpu_used_pct": pipe.get("cpu_used_percent"),
                             "cpu_budget_pct": pipe.get("cpu_budget_percent"),
                             "rss_mb": round(rss, 1), "cpu_s": round(cpu, 1),
                             "procs": nprocs, "worker": st.get("engine", {}).get("worker"),
                             "cache_mb": _caches(st.get("engine", {})),
                             "call_rise_mb": _rises(st.get("engine", {}))}
        s.update(tree_memory(self.daemon.pid))
        if rss > max((x["rss_mb"] for x in self.samples), default=0.0):
            s["mappings"] = {role: mappings(int(m["pid"]))
                             for role, m in s["by_process"].items()}
        if check_store:
            j = last7_journal(self.daemon.data, self.cutoff)
            d = store_digests(self.daemon.data)
            s["last7"] = {"events": j["events"], "summarized": j["summarized"],
                          "days": len(j["days"]), "day_digests": len(d["day_ids"]),
                          "levels": d["levels"]}
            if "last7_done" not in self.marks and last7_done(j, d):
                self.marks["last7_done"] = t
        self.samples.append(s)
        self._mark_searchable(s)
        return s

    def _mark_searchable(self, s: dict[str, Any]) -> None:
        """Searchable: nothing left new, and the collectors' total settled since last time."""
        jr = s["journal"]
        prev = self.samples[-2]["journal"] if len(self.samples) > 1 else None
        if ("searchable" not in self.marks and jr["total"] and not jr["new"]
                and prev and prev["total"] == jr["total"]):
            self.marks["searchable"] = s["t"]

    def all_summarized(self) -> bool:
        jr = self.samples[-1]["journal"] if self.samples else {}
        return bool(jr.get("total")) and jr["summarized"] == jr["total"]


def _caches(engine: dict[str, Any]) -> dict[str, Any]:
    """LanceDB's caches in the worker and the reader, MB (engine status)."""
    return {"worker": engine.get("store_cache_mb"),
            "reader": (engine.get("reader_memory") or {}).get("store_cache_mb")}


def _rises(engine: dict[str, Any]) -> dict[str, Any]:
    """The most one call of each kind raised the worker's and the reader's resident set
    so far, MB (engine status `rise_mb`, daemon/store/memtrim.py)."""
    return {"worker": engine.get("rise_mb"),
            "reader": (engine.get("reader_memory") or {}).get("rise_mb")}


def line(s: dict[str, Any]) -> str:
    jr, st = s["journal"], s.get("stages") or {}
    eta = {k: v.get("eta_seconds") for k, v in st.items()}
    rate = {k: v.get("rate_per_s") for k, v in st.items()}
    extra = ""
    if "last7" in s:
        l7 = s["last7"]
        extra = (f" | last7 {l7['summarized']}/{l7['events']} digests {l7['day_digests']}"
                 f" {l7['levels']}")
    return (f"t={s['t']:.0f}s new={jr['new']} indexed={jr['indexed']} "
            f"summarized={jr['summarized']} total={jr['total']} rate={rate} eta={eta} "
            f"rss={s['rss_mb']:.0f}MB unique={s.get('unique_mb')}MB cpu_used={s['cpu_used_pct']}% "
            f"caches={s.get('cache_mb')}{extra}")


def drive(run: Run, deadline_s: float, every: float, store_every: float,
          watch_after: float = 300.0) -> None:
    next_store = 0.0
    while True:
        t = time.monotonic() - run.t0
        check = t >= next_store
        if check:
            next_store = t + store_every
        try:
            s = run.sample(check)
            log(line(s))
        except (httpx.HTTPError, OSError, sqlite3.Error) as exc:
            log(f"sample failed: {type(exc).__name__}: {exc}")
        done = "searchable" in run.marks and "last7_done" in run.marks
        after7 = run.marks.get("last7_done")
        # once the last 7 days are done, watch the budgeted CPU (and the next digests'
        # memory, with a --watch-after past DIGESTS_FOLLOW_SECONDS) a while longer
        if run.all_summarized() or t >= deadline_s or (done and after7 is not None
                                                      and t - after7 >= watch_after):
            return
        time.sleep(every)


# -- the figures ---------------------------------------------------------------------------

def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def search_figures(searches: list[dict[str, Any]], until: float | None) -> dict[str, Any]:
    during = [s for s in searches if until is None or s["t"] <= until]
    ms = [s["ms"] for s in during]
    return {"n": len(during), "errors": sum(1 for s in during if s["error"]),
            "empty": sum(1 for s in during if not s["results"] and not s["error"]),
            "p50_ms": pct(ms, 0.5), "p95_ms": pct(ms, 0.95),
            "max_ms": max(ms) if ms else None}


def cpu_share(samples: list[dict[str, Any]], since: float | None, cores: int) -> float | None:
    """The daemon tree's CPU, % of the whole machine (100 = every core), after `since`."""
    if since is None:
        return None
    after = [s for s in samples if s["t"] >= since]
    if len(after) < 2 or after[-1]["t"] - after[0]["t"] < 30:
        return None
    a, b = after[0], after[-1]
    return round((b["cpu_s"] - a["cpu_s"]) / ((b["t"] - a["t"]) * cores) * 100, 1)


def rss_figures(samples: list[dict[str, Any]], searchable: float | None) -> dict[str, Any]:
    rss = [s["rss_mb"] for s in samples]
    if not rss:
        return {}
    peak_i = rss.index(max(rss))
    # by the time all is indexed the embedder is loaded; the summarizer loads beside it
    at = next((s["rss_mb"] for s in samples if searchable is not None and s["t"] >= searchable),
              None)
    pss = [s.get("pss_mb", 0.0) for s in samples]
    unique = [s["unique_mb"] for s in samples if s.get("unique_mb") is not None]
    return {"first_mb": rss[0], "peak_mb": rss[peak_i], "peak_at_s": samples[peak_i]["t"],
            "peak_by_process": samples[peak_i].get("by_process"),
            "peak_mappings": samples[peak_i].get("mappings"),
            "peak_pss_mb": max(pss), "peak_unique_mb": max(unique, default=None),
            "at_searchable_mb": at, "last_mb": rss[-1],
            "trajectory_mb": [[s["t"], s["rss_mb"]] for s in
                              samples[:: max(1, len(samples) // 40)]]}


def figures(run: Run, searches: list[dict[str, Any]], cores: int,
            budget: float) -> dict[str, Any]:
    marks = run.marks
    backfill_end = marks.get("last7_done")
    return {"searchable_s": marks.get("searchable"), "last7_done_s": marks.get("last7_done"),
            "rss": rss_figures(run.samples, marks.get("searchable")),
            "search_during_backfill": search_figures(searches, backfill_end),
            "search_all": search_figures(searches, None),
            "cpu_after_last7_pct_of_machine": cpu_share(run.samples, backfill_end, cores),
            "cpu_budget_pct": budget,
            "final_journal": run.samples[-1]["journal"] if run.samples else None,
            "final_last7": next((s["last7"] for s in reversed(run.samples) if "last7" in s),
                                None),
            "elapsed_s": run.samples[-1]["t"] if run.samples else None}


def verdicts(f: dict[str, Any]) -> dict[str, str]:
    def cmp(value: float | None, target: float) -> str:
        return "not reached" if value is None else ("met" if value <= target else "missed")

    return {"searchable_s": cmp(f["searchable_s"], TARGETS["searchable_s"]),
            "last7_done_s": cmp(f["last7_done_s"], TARGETS["last7_done_s"]),
            "peak_rss_mb": cmp(f["rss"].get("peak_mb"), TARGETS["peak_rss_mb"]),
            "peak_unique_mb": cmp(f["rss"].get("peak_unique_mb"), TARGETS["peak_rss_mb"]),
            "search_p95_ms": cmp(f["search_during_backfill"]["p95_ms"],
                                 TARGETS["search_p95_ms"]),
            "cpu_after_last7": cmp(f["cpu_after_last7_pct_of_machine"], f["cpu_budget_pct"])}


def table(f: dict[str, Any], v: dict[str, str]) -> str:
    sd, r = f["search_during_backfill"], f["rss"]
    rows = [("all searchable (s)", f["searchable_s"], "<= 600", v["searchable_s"]),
            ("last 7 days summarized + digested (s)", f["last7_done_s"], "<= 3600",
             v["last7_done_s"]),
            ("peak tree RSS (MB)", r.get("peak_mb"), "<= 1200", v["peak_rss_mb"]),
            ("peak tree PSS (MB; shared pages split)", r.get("peak_pss_mb"), "", ""),
            ("peak tree resident pages, each once (MB)", r.get("peak_unique_mb"), "<= 1200",
             v["peak_unique_mb"]),
            ("RSS first / all indexed / last (MB)",
             f"{r.get('first_mb')} / {r.get('at_searchable_mb')} / {r.get('last_mb')}", "flat",
             ""),
            ("search p50 / p95 / max during backfill (ms)",
             f"{sd['p50_ms']} / {sd['p95_ms']} / {sd['max_ms']} (n={sd['n']})", "p95 <= 300",
             v["search_p95_ms"]),
            ("tree CPU after last-7 point (% of machine)", f["cpu_after_last7_pct_of_machine"],
             f"<= {f['cpu_budget_pct']}", v["cpu_after_last7"])]
    return "\n".join(f"{a:<45} {str(b):<32} {c:<12} {d}" for a, b, c, d in rows)


# -- main ----------------------------------------------------------------------------------

def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--eval-kit", default=str(ROOT.parent / "shared" / "eval"),
                    help="the eval kit's folder (holds heavy_home.py)")
    ap.add_argument("--home", help="a home heavy_home.py already built (skips the build)")
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--per-day", type=int, default=300)
    ap.add_argument("--src", nargs="*", help="source trees for the files root "
                    "(default: this repo's daemon/ and the installed fastapi)")
    ap.add_argument("--models-dir", default=str(Path.home() / ".cache" / "memoryd"
                                                / "test-models"))
    ap.add_argument("--deadline", type=float, default=60.0, help="minutes")
    ap.add_argument("--watch-after", type=float, default=300.0,
                    help="seconds to keep sampling after the last 7 days are done")
    ap.add_argument("--every", type=float, default=10.0, help="status/RSS sample period (s)")
    ap.add_argument("--store-every", type=float, default=30.0)
    ap.add_argument("--search-every", type=float, default=5.0)
    ap.add_argument("--polite", action="store_true",
                    help="keep the default yield to a busy CPU (the shared box defers it)")
    ap.add_argument("--work", help="work dir (default: a new temp dir, kept)")
    return ap.parse_args()


def prepare(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    home = Path(a.home) if a.home else work / "heavy"
    if not a.home:
        log(f"building the heavy home ({a.days} days x {a.per_day}) in {home}")
        build_home(Path(a.eval_kit), home, a.days, a.per_day, a.src or default_sources())
    manifest: dict[str, Any] = json.loads((home / "manifest.json").read_text())
    return manifest


def main() -> None:
    a = parse()
    work = Path(a.work or tempfile.mkdtemp(prefix="backfill-"))
    work.mkdir(parents=True, exist_ok=True)
    manifest = prepare(a, work)
    config = write_config(work, manifest, a.models_dir, a.polite)
    daemon = Daemon(work, config)
    cores = psutil.cpu_count() or 1
    with Contention(every=5.0) as load:
        t0 = time.monotonic()
        daemon.start(private_env(work))
        log(f"daemon pid {daemon.pid} started; work dir {work}")
        run = Run(daemon, t0, last7_cutoff(datetime.now(UTC)))
        searcher = Searcher(daemon, a.search_every, t0)
        thread = threading.Thread(target=searcher.run, daemon=True)
        thread.start()
        try:
            drive(run, a.deadline * 60, a.every, a.store_every, a.watch_after)
        finally:
            searcher.stop()
            thread.join(timeout=150)
            code = daemon.stop()
    budget = next((s["cpu_budget_pct"] for s in reversed(run.samples)
                   if s.get("cpu_budget_pct") is not None), 25.0)
    f = figures(run, searcher.samples, cores, budget)
    v = verdicts(f)
    print(table(f, v))
    print(load.line())
    write_result("backfill", {
        "machine": machine(), "contention": load.summary(), "targets": TARGETS,
        "home": {k: manifest[k] for k in ("events", "shell", "browser", "files", "days")},
        "config": {"polite": a.polite, "deadline_min": a.deadline,
                   "watch_after_s": a.watch_after, "exit_code": code},
        "figures": f, "verdicts": v, "samples": run.samples, "searches": searcher.samples})


if __name__ == "__main__":
    main()
