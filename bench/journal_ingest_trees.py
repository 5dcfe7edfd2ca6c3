"""Batched journal ingest of two source trees side by side: before and after a change.

  $PY bench/journal_ingest_trees.py BEFORE_TREE AFTER_TREE [--trials 3]

(a tree is a checkout, e.g. `git worktree add --detach /tmp/before <commit>`). Each trial
builds one set of events with this tree's `bench/journal_ingest.make_events` (50,000
file saves of ~300 characters, 1 in 20 carrying a secret) and runs the same events, each
sink in a fresh process (order rotated per trial), through a tree's journal in batches
of 1,000 with a cursor, as `bench/journal_ingest.py`'s batched mode does:
  <tree>        Journal(redact=redact) as that tree's daemon has it (a tree with the
                redaction pool, daemon/intake/redact_pool.py, starts it first, untimed)
  <tree>/1proc  the same with workers=0 (only for a tree that has the pool)
  <tree>/gate   PrivacyGate -> Journal(redact=redact), as `memoryd run` wires it
  floor         AFTER's Journal() without redaction
Every run checks that no injected secret is in the rows it stored. Prints medians of
events/s and events per CPU-second (the process and its children), and the load.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
N, BATCH = 50_000, 1_000


def worker(tree: str, events_file: str, sink: str) -> None:
    """In a fresh process: `sink` of `tree` over the pickled events; one JSON line out."""
    sys.path.insert(0, tree)
    import psutil

    from collectors.base import Batch
    from daemon.config import Config, PrivacyConfig
    from daemon.intake.journal import Journal
    from daemon.intake.privacy import gate_for
    from daemon.intake.redact import redact

    with open(events_file, "rb") as f:
        events, injected = pickle.load(f)
    pooled = "workers" in Journal.__init__.__code__.co_varnames
    with tempfile.TemporaryDirectory(prefix="memoryd-ab-") as tmp:
        kw: dict[str, Any] = {"workers": 0} if sink == "1proc" else {}
        if pooled and sink in ("redact", "gate"):
            from bench.journal_ingest import warm_pool  # that tree's: starts its pool
            warm_pool(tmp)
        journal = Journal(Path(tmp) / "j.sqlite3",
                          redact=None if sink == "floor" else redact, **kw)
        target: Any = journal
        if sink == "gate":
            cfg = Config(data_dir=str(Path(tmp) / "data"),
                         privacy=PrivacyConfig(exclude_paths=("~/private/*", "*.kdbx")))
            target = gate_for(cfg, journal)
        if sink != "floor":
            redact("warm up: key=abc")  # builds the rules, as a running daemon has them
        me = psutil.Process()

        def cpu() -> float:
            total = time.process_time()
            for child in me.children(recursive=True):
                try:
                    t = child.cpu_times()
                except psutil.Error:
                    continue
                total += t.user + t.system
            return total

        started, cpu0 = time.perf_counter(), cpu()
        for i in range(0, len(events), BATCH):
            target.append(Batch("files", events[i:i + BATCH], json.dumps({"at": i})))
        wall, used = time.perf_counter() - started, cpu() - cpu0
        stored = {e.id: e for e in journal.at_stage(0, len(events) + 1)}
        journal.close()
    leaked = 0 if sink == "floor" else sum(
        secret in stored[i].text for i, secret in injected.items() if i in stored)
    print(json.dumps({"rate": len(events) / wall, "cpu_rate": len(events) / used,
                      "stored": len(stored), "leaked": leaked}))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--worker", nargs=3, metavar=("TREE", "EVENTS", "SINK"))
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return 0
    sys.path.insert(0, str(ROOT))
    from bench import journal_ingest as ji
    from bench.common import Contention

    trees = {"before": args.before, "after": args.after}
    sinks: list[tuple[str, str, str]] = [("floor", args.after, "floor")]
    for name, tree in trees.items():
        sinks.append((name, tree, "redact"))
        if (Path(tree) / "daemon/intake/redact_pool.py").exists():
            sinks.append((f"{name}/1proc", tree, "1proc"))
        sinks.append((f"{name}/gate", tree, "gate"))
    results: dict[str, list[dict[str, float]]] = {s[0]: [] for s in sinks}
    with Contention() as meter, tempfile.TemporaryDirectory() as tmp:
        for trial in range(args.trials):
            ji.INJECTED.clear()
            events = ji.make_events(N, f"ab{trial}", seed=trial)
            path = Path(tmp) / "events.pkl"
            path.write_bytes(pickle.dumps((events, dict(ji.INJECTED))))
            k = trial % len(sinks)
            for label, tree, sink in sinks[k:] + sinks[:k]:
                out = subprocess.run(
                    [sys.executable, __file__, "x", "y", "--worker", tree, str(path), sink],
                    capture_output=True, text=True, check=True, env={**os.environ,
                                                                     "PYTHONPATH": tree})
                r = json.loads(out.stdout.strip().splitlines()[-1])
                assert r["stored"] == N, f"{label}: stored {r['stored']} of {N}"
                assert r["leaked"] == 0, f"{label}: {r['leaked']} injected secrets stored"
                results[label].append(r)
                print(f"  trial {trial + 1} {label:14s} {r['rate']:9,.0f} events/s "
                      f"({r['cpu_rate']:,.0f} per CPU-second)", flush=True)
    print(f"\n{'sink':14s} {'events/s':>9s} {'per CPU-s':>10s}  (medians of {args.trials})")
    for label, rs in results.items():
        print(f"{label:14s} {statistics.median(r['rate'] for r in rs):9,.0f} "
              f"{statistics.median(r['cpu_rate'] for r in rs):10,.0f}")
    print(meter.line(), f"load average at the end {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
