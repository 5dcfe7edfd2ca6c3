"""Journal ingest throughput: events/s into daemon.intake.journal.Journal, redaction on.

Two modes, as the daemon uses them:
  per-event  one Batch of one event per append() (like a live file save)
  batched    Batches of 1,000 events per append(), with a cursor (like a backfill)
Each mode runs four sinks side by side in the same run (order rotated per trial):
  redact_on   Journal(redact=daemon.intake.redact.redact)            the measured target
              (subject, title, text and attrs; detect-secrets' plugins behind the
              Aho-Corasick trigger pre-filter, one pass per event)
  redact_old  the redaction of commit bed4f5b (bench/redact_bed4f5b.py: own regexes,
              subject/title/text only), as that commit's Journal applied it
  redact_off  Journal() without redaction                      what redaction costs
  daemon_sink PrivacyGate (2 path exclusions, the default secret_files) ->
              Journal(redact=redact), as `memoryd run` wires it (gate_for)
Events are built before timing starts (collectors.base.Event.new, ~300 chars of
memoryd's own source as text, 1 in 20 carrying a secret that redaction must catch).
A per-pattern profile of redact() closes the run, with a check that none of the
injected secrets reached the journal.

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
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import redact_bed4f5b  # noqa: E402
from bench.common import Contention, machine, write_result  # noqa: E402
from collectors.base import Batch, Event  # noqa: E402
from daemon.config import Config, PrivacyConfig  # noqa: E402
from daemon.intake.journal import Journal  # noqa: E402
from daemon.intake.privacy import gate_for  # noqa: E402
from daemon.intake.redact import redact, rules  # noqa: E402

PER_EVENT_N = 5_000     # events per per-event trial
BATCH_SIZE = 1_000
BATCHED_N = 50_000      # events per batched trial
TRIALS = 3              # each sink per mode, order rotated; median reported
TARGETS = {"per_event": 1_000, "batched": 20_000}

# (a secret in context, the part of it that must not reach the journal)
SECRETS = (("export API_TOKEN=ghp_{r}abcdefghijklmnopqrstuvwxyz0123", "ghp_{r}"),
           ("password: hunter2{r}x", "hunter2{r}"),
           ("curl https://bob:s3cr3t{r}@example.com/x", "s3cr3t{r}"),
           ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.{r}abcdefgh",
            "eyJzdWIiOiIxMjM0NTY3ODkwIn0.{r}"))
INJECTED: dict[str, str] = {}  # event id -> the secret part injected into its text


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
            secret, part = rnd.choice(SECRETS)
            r = rnd.randrange(10**6)
            text = text[:240] + " " + secret.format(r=r)
        path = f"/home/dev/src/proj{i % 37}/mod_{tag}_{i}.py"
        ev = Event.new(ts=base + i * 0.5, source="files", kind="file.modified",
                       subject=path, title=Path(path).name, text=text,
                       attrs={"size": len(text), "root": "/home/dev/src"})
        if i % 20 == 0:
            INJECTED[ev.id] = part.format(r=r)
        out.append(ev)
    return out


def redaction_profile(events: list[Event]) -> dict[str, dict[str, float]]:
    """Per rule of daemon.intake.redact: us per event text if it ran on every text, and how
    often its trigger substrings let it run on these texts."""
    texts = [e.text for e in events]
    lowers = [t.lower() for t in texts]
    out: dict[str, dict[str, float]] = {}
    ruleset = rules()
    for i, rule in enumerate(ruleset.rules):
        started = time.perf_counter()
        for t in texts:
            rule.spans(t)
        us = (time.perf_counter() - started) / len(texts) * 1e6
        seen = texts if rule.cased else lowers
        runs = (sum(any(x in t for x in rule.triggers) for t in seen) / len(texts)
                if rule.triggers else 1.0)
        out[f"{i:02d} {rule.kind}"] = {"us_if_run": round(us, 1),
                                       "runs_on_fraction": round(runs, 3)}
    for name, fn in (("redact()", redact), ("redact() of bed4f5b", redact_bed4f5b.redact)):
        started = time.perf_counter()
        for e in events:
            fn(e.subject), fn(e.title), fn(e.text)
        us = (time.perf_counter() - started) / len(texts) * 1e6
        out[f"{name} on subject+title+text"] = {"us_if_run": round(us, 1),
                                                 "runs_on_fraction": 1.0}
    return out


VARIANTS = ("redact_on", "redact_old", "redact_off", "daemon_sink")


class OldJournal(Journal):
    """The journal as commit bed4f5b used it: subject, title and text redacted, attrs not."""

    def _rows(self, events: list[Event], now: float) -> list[tuple[object, ...]]:
        r = redact_bed4f5b.redact
        out: list[tuple[object, ...]] = []
        for ev in events:
            e = replace(ev, subject=r(ev.subject), title=r(ev.title), text=r(ev.text))
            out.append((e.id, e.ts.timestamp(), e.source, e.kind, e.subject, e.title, e.text,
                        e.attrs_json(), now))
        return out


def open_sink(tmp: str, name: str, variant: str) -> tuple[Journal, Any]:
    """The journal, and what the benchmark appends to (the journal, or a gate before it)."""
    path = Path(tmp) / f"{name}.sqlite3"
    if variant == "redact_old":
        return (j := OldJournal(path)), j
    journal = Journal(path, redact=None if variant == "redact_off" else redact)
    if variant != "daemon_sink":
        return journal, journal
    cfg = Config(data_dir=str(Path(tmp) / f"{name}-data"),
                 privacy=PrivacyConfig(exclude_paths=("~/private/*", "*.kdbx")))
    return journal, gate_for(cfg, journal)


def cpu_seconds() -> float:
    """CPU time of this process (the journal redacts and inserts in it)."""
    return time.process_time()


def run_per_event(journal: Any, events: list[Event]) -> tuple[float, float]:
    started, cpu = time.perf_counter(), cpu_seconds()
    for ev in events:
        journal.append(Batch("files", [ev], None))
    return (len(events) / (time.perf_counter() - started),
            len(events) / (cpu_seconds() - cpu))


def run_batched(journal: Any, events: list[Event]) -> tuple[float, float]:
    started, cpu = time.perf_counter(), cpu_seconds()
    for i in range(0, len(events), BATCH_SIZE):
        journal.append(Batch("files", events[i:i + BATCH_SIZE], json.dumps({"at": i})))
    return (len(events) / (time.perf_counter() - started),
            len(events) / (cpu_seconds() - cpu))


def measure(tmp: str) -> tuple[dict[str, dict[str, list[float]]],
                               dict[str, dict[str, list[float]]], dict[str, int]]:
    results: dict[str, dict[str, list[float]]] = {
        mode: {v: [] for v in VARIANTS} for mode in ("per_event", "batched")}
    # events per second of this process's own CPU time: what the box's other load cannot
    # slow down (wall-clock rates also measure the neighbours)
    cpu_rates: dict[str, dict[str, list[float]]] = {
        mode: {v: [] for v in VARIANTS} for mode in ("per_event", "batched")}
    for trial in range(TRIALS):
        for mode, n, fn in (("per_event", PER_EVENT_N, run_per_event),
                            ("batched", BATCHED_N, run_batched)):
            # Rotate which variant goes first, so drift on a noisy box hits them all.
            k = trial % len(VARIANTS)
            order = VARIANTS[k:] + VARIANTS[:k]
            for variant in order:
                events = make_events(n, f"{mode}{trial}{variant}", seed=trial)
                # A fresh journal per trial: the table grows the same way for each.
                journal, sink = open_sink(tmp, f"{mode}-{trial}-{variant}", variant)
                rate, cpu_rate = fn(sink, events)
                stored = journal.counts()["total"]
                journal.close()
                assert stored == n, f"{mode}: stored {stored} of {n}"
                results[mode][variant].append(rate)
                cpu_rates[mode][variant].append(cpu_rate)
                print(f"  trial {trial + 1} {mode:9s} {variant:11s} {rate:10,.0f} events/s "
                      f"({cpu_rate:,.0f} per CPU-second)",
                      flush=True)

    # Redaction sanity: the secrets really are gone from what was stored.
    leaked = {}
    for name, j in (("redact_on", Journal(Path(tmp) / "check.sqlite3", redact=redact)),
                    ("redact_old", OldJournal(Path(tmp) / "check-old.sqlite3"))):
        j.append(Batch("files", make_events(400, "check", seed=99), None))
        stored = j.at_stage(0, 1000)
        assert sum(e.id in INJECTED for e in stored) == 20
        leaked[name] = sum(e.id in INJECTED and INJECTED[e.id] in e.text for e in stored)
        j.close()
    return results, cpu_rates, leaked


def main() -> int:
    box = machine()
    with Contention() as meter, tempfile.TemporaryDirectory(prefix="memoryd-bench-") as tmp:
        results, cpu_rates, leaked = measure(tmp)
        profile = redaction_profile(make_events(2_000, "profile", seed=7))
    summary: dict[str, dict[str, Any]] = {}
    print()
    print(f"{'mode':10s} {'sink':>11s} {'median ev/s':>12s} {'min':>10s} {'max':>10s} "
          f"{'target':>8s} {'ok':>4s} {'per CPU-second':>14s}")
    for mode, variants in results.items():
        summary[mode] = {}
        for variant, rates in variants.items():
            med = statistics.median(rates)
            ok = med >= TARGETS[mode] if variant in ("redact_on", "daemon_sink") else None
            cpu = statistics.median(cpu_rates[mode][variant])
            summary[mode][variant] = {"median": round(med), "min": round(min(rates)),
                                      "max": round(max(rates)),
                                      "trials": [round(r) for r in rates],
                                      "per_cpu_second_median": round(cpu)}
            print(f"{mode:10s} {variant:>11s} {med:12,.0f} {min(rates):10,.0f} "
                  f"{max(rates):10,.0f} {TARGETS[mode]:8,d} "
                  f"{'' if ok is None else ('yes' if ok else 'NO'):>4s} {cpu:14,.0f}")
        on, off = summary[mode]["redact_on"]["median"], summary[mode]["redact_off"]["median"]
        gate = summary[mode]["daemon_sink"]["median"]
        summary[mode]["redaction_cost_pct"] = round((off - on) / off * 100, 1)
        summary[mode]["new_vs_old"] = round(on / summary[mode]["redact_old"]["median"], 2)
        summary[mode]["new_vs_old_cpu"] = round(
            summary[mode]["redact_on"]["per_cpu_second_median"]
            / summary[mode]["redact_old"]["per_cpu_second_median"], 2)
        summary[mode]["gate_cost_pct"] = round((on - gate) / on * 100, 1)
        summary[mode]["target"] = TARGETS[mode]
        summary[mode]["meets_target"] = on >= TARGETS[mode]
        print(f"{'':10s} redaction costs {summary[mode]['redaction_cost_pct']}% of throughput; "
              f"the privacy gate {summary[mode]['gate_cost_pct']}% more; new/old "
              f"{summary[mode]['new_vs_old']}x wall, {summary[mode]['new_vs_old_cpu']}x CPU")
    print(f"injected secrets (20) left in the journal: {leaked}")
    print()
    print(f"{'redaction by rule':32s} {'us/text if run':>14s} {'runs on':>8s}")
    for kind, v in profile.items():
        print(f"  {kind:30s} {v['us_if_run']:14.1f} {v['runs_on_fraction']:8.0%}")

    print(meter.line())
    write_result("journal_ingest", {
        "machine": box, "contention": meter.summary(),
        "params": {"per_event_n": PER_EVENT_N, "batched_n": BATCHED_N,
                   "batch_size": BATCH_SIZE, "trials": TRIALS, "text_chars": 300},
        "results": summary,
        "secrets_leaked": leaked,
        "redaction_profile": profile,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
