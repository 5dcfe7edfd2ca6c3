"""Journal ingest throughput: events/s into daemon.journal.Journal, redaction on.

Two modes, as the daemon uses them:
  per-event  one Batch of one event per append() (like a live file save)
  batched    Batches of 1,000 events per append(), with a cursor (like a backfill)
Each mode is also run with redaction off, side by side in the same run, so the cost of
daemon.redact.redact is visible. Events are built before timing starts
(collectors.base.Event.new, ~300 chars of memoryd's own source as text, 1 in 20 carrying
a secret that redaction must catch). A per-pattern profile of redact() closes the run.

Targets: per-event >= 1,000 events/s, batched >= 20,000 events/s (redaction on).
Run:  /root/.local/share/memoryd/venv/bin/python bench/journal_ingest.py
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import Contention, machine, write_result  # noqa: E402
from collectors.base import Batch, Event  # noqa: E402
from daemon.journal import Journal  # noqa: E402
from daemon.redact import redact  # noqa: E402

PER_EVENT_N = 5_000     # events per per-event trial
BATCH_SIZE = 1_000
BATCHED_N = 50_000      # events per batched trial
TRIALS = 3              # alternating redaction on/off, median reported
TARGETS = {"per_event": 1_000, "batched": 20_000}

SECRETS = ("export API_TOKEN=ghp_{r}abcdefghijklmnopqrstuvwxyz0123",
           "password: hunter2{r}x", "curl https://bob:s3cr3t{r}@example.com/x",
           "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.{r}abcdefgh")


def source_text() -> str:
    """Realistic file-save text: memoryd's own Python sources (what the files collector sees)."""
    files = sorted(p for d in ("daemon", "collectors", "models") for p in (ROOT / d).glob("*.py"))
    return "".join(p.read_text(encoding="utf-8") for p in files)


SOURCE = source_text()


def make_events(n: int, tag: str, seed: int) -> list[Event]:
    """n file.modified events, ~300 chars of source text each, 1 in 20 with a secret."""
    rnd = random.Random(seed)
    base = datetime(2026, 11, 26, 9, 0, tzinfo=UTC).timestamp()
    out = []
    for i in range(n):
        at = rnd.randrange(0, len(SOURCE) - 300)
        text = SOURCE[at:at + 300]
        if i % 20 == 0:
            text = text[:240] + " " + rnd.choice(SECRETS).format(r=rnd.randrange(10**6))
        path = f"/home/dev/src/proj{i % 37}/mod_{tag}_{i}.py"
        out.append(Event.new(ts=base + i * 0.5, source="files", kind="file.modified",
                             subject=path, title=Path(path).name, text=text,
                             attrs={"size": len(text), "root": "/home/dev/src"}))
    return out


def redaction_profile(events: list[Event]) -> dict[str, float]:
    """Microseconds per event text spent in each of daemon.redact's patterns (sub)."""
    from daemon.redact import _PATTERNS

    texts = [e.text for e in events]
    out = {}
    for kind, pattern in _PATTERNS:
        started = time.perf_counter()
        for t in texts:
            pattern.sub("", t)
        out[kind] = (time.perf_counter() - started) / len(texts) * 1e6
    started = time.perf_counter()
    for e in events:
        redact(e.subject), redact(e.title), redact(e.text)
    out["redact() on subject+title+text"] = (time.perf_counter() - started) / len(texts) * 1e6
    return out


def run_per_event(journal: Journal, events: list[Event]) -> float:
    started = time.perf_counter()
    for ev in events:
        journal.append(Batch("files", [ev], None))
    return len(events) / (time.perf_counter() - started)


def run_batched(journal: Journal, events: list[Event]) -> float:
    started = time.perf_counter()
    for i in range(0, len(events), BATCH_SIZE):
        journal.append(Batch("files", events[i:i + BATCH_SIZE], json.dumps({"at": i})))
    return len(events) / (time.perf_counter() - started)


def measure(tmp: str) -> tuple[dict[str, dict[str, list[float]]], int]:
    results: dict[str, dict[str, list[float]]] = {
        "per_event": {"redact_on": [], "redact_off": []},
        "batched": {"redact_on": [], "redact_off": []},
    }
    for trial in range(TRIALS):
        for mode, n, fn in (("per_event", PER_EVENT_N, run_per_event),
                            ("batched", BATCHED_N, run_batched)):
            # Alternate which variant goes first, so drift on a noisy box hits both.
            order = ["redact_on", "redact_off"]
            if trial % 2:
                order.reverse()
            for variant in order:
                events = make_events(n, f"{mode}{trial}{variant}", seed=trial)
                # A fresh journal per trial: the table grows the same way for each.
                db = Path(tmp) / f"{mode}-{trial}-{variant}.sqlite3"
                journal = Journal(db, redact=redact if variant == "redact_on" else None)
                rate = fn(journal, events)
                stored = journal.counts()["total"]
                journal.close()
                assert stored == n, f"{mode}: stored {stored} of {n}"
                results[mode][variant].append(rate)
                print(f"  trial {trial + 1} {mode:9s} {variant:10s} {rate:10,.0f} events/s",
                      flush=True)

    # Redaction sanity: the secrets really are gone from what was stored.
    j = Journal(Path(tmp) / "check.sqlite3", redact=redact)
    j.append(Batch("files", make_events(400, "check", seed=99), None))
    markers = ("ghp_", "hunter2", "s3cr3t", "eyJzdWIi")  # one from each kind in SECRETS
    leaked = [e.text for e in j.at_stage(0, 1000) if any(m in e.text for m in markers)]
    j.close()
    return results, len(leaked)


def main() -> int:
    box = machine()
    with Contention() as meter, tempfile.TemporaryDirectory(prefix="memoryd-bench-") as tmp:
        results, leaked = measure(tmp)
        profile = redaction_profile(make_events(2_000, "profile", seed=7))
    summary = {}
    print()
    print(f"{'mode':10s} {'redaction':>10s} {'median ev/s':>12s} {'min':>10s} {'max':>10s} "
          f"{'target':>8s} {'ok':>4s}")
    for mode, variants in results.items():
        summary[mode] = {}
        for variant, rates in variants.items():
            med = statistics.median(rates)
            ok = med >= TARGETS[mode] if variant == "redact_on" else None
            summary[mode][variant] = {"median": round(med), "min": round(min(rates)),
                                      "max": round(max(rates)),
                                      "trials": [round(r) for r in rates]}
            print(f"{mode:10s} {variant:>10s} {med:12,.0f} {min(rates):10,.0f} "
                  f"{max(rates):10,.0f} {TARGETS[mode]:8,d} "
                  f"{'' if ok is None else ('yes' if ok else 'NO'):>4s}")
        on, off = summary[mode]["redact_on"]["median"], summary[mode]["redact_off"]["median"]
        summary[mode]["redaction_cost_pct"] = round((off - on) / off * 100, 1)
        summary[mode]["target"] = TARGETS[mode]
        summary[mode]["meets_target"] = on >= TARGETS[mode]
        print(f"{'':10s} redaction costs {summary[mode]['redaction_cost_pct']}% of throughput")
    print(f"secrets leaked into the journal: {leaked}")
    print()
    print("redaction cost per event (us), by pattern:")
    for kind, us in profile.items():
        print(f"  {kind:32s} {us:8.1f}")

    print(meter.line())
    write_result("journal_ingest", {
        "machine": box, "contention": meter.summary(),
        "params": {"per_event_n": PER_EVENT_N, "batched_n": BATCHED_N,
                   "batch_size": BATCH_SIZE, "trials": TRIALS, "text_chars": 300},
        "results": summary,
        "secrets_leaked": leaked,
        "redaction_us_per_event": {k: round(v, 1) for k, v in profile.items()},
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
