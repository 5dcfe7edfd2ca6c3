"""Memory quality on eval-kit builds, in one table: recall@5 per build and per question
class, hallucination rate per model before and after repair, identifiers kept, decision
and open-task recall and precision, the "what is still open" context pack, ingest time.

Each build is a directory `../shared/eval/run.py SET --keep DIR` left (its ingest log, if
kept next to it as DIR.log, gives the ingest time). Questions are asked in one process
against DIR's store, scored with the kit's own scorer (as bench/eval_kept.py does).
Faithfulness is measured with `daemon.pipeline.faithful`, which shares no code with the
summarizer: "before repair" is what the model wrote (the check's record in
DIR/data/faithfulness.jsonl), "after repair" re-checks the stored memories against their
source events, read back from the store. Decisions and open tasks are scored against the
hand-written list in bench/labels/dev_week_decisions_tasks.json.

Run:  PYTHONPATH=. ~/.local/opt/memoryd/venv/bin/python bench/memory_quality.py \\
          --build sum=/tmp/q/sum --build nosum=/tmp/q/nosum [--eval-kit ../shared/eval]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import defaultdict
from datetime import UTC
from pathlib import Path
from typing import Any

os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
                  TRANSFORMERS_VERBOSITY="error", TOKENIZERS_PARALLELISM="false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon.pipeline import faithful

LABELS = Path(__file__).resolve().parent / "labels" / "dev_week_decisions_tasks.json"
CLASSES = {"file": "file content", "shell": "command run", "browser": "page visited"}
DETERMINISTIC = "deterministic"


def _matches(item: str, label: dict[str, Any]) -> bool:
    low = item.lower()
    return any(all(s.lower() in low for s in alt) for alt in label["match"])


def recall_by_class(engine: Any, kit: Any, set_dir: str, k: int) -> dict[str, tuple[int, int]]:
    from daemon.service import hit_json

    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for q in kit.load_questions(set_dir):
        results = [hit_json(h) for h in engine.search(q["question"], k)]
        hit = not kit.score(results, q["expect"], k)
        cls = CLASSES.get(q["sources"][0], "other") if len(q["sources"]) == 1 else "two sources"
        for key in ("all", cls):
            out[key][0] += hit
            out[key][1] += 1
    return {c: (h, n) for c, (h, n) in out.items()}


def _event_sources(store: Any) -> dict[str, str]:
    rows = store.events.search().select(["id", "ts", "kind", "subject", "title", "text"]) \
        .limit(None).to_list()
    out = {}
    for r in rows:
        ts = r["ts"].replace(tzinfo=UTC) if r["ts"].tzinfo is None else r["ts"]
        out[r["id"]] = (f"{r['kind']} {ts:%Y-%m-%d %H:%M %A %B}\n{r['subject']}\n"
                        f"{r['title']}\n{r['text']}")
    return out


def faithfulness(data: Path, store: Any) -> dict[str, Any]:
    """Per model and level: memories, share failing before repair (the check's record)
    and after (the stored text re-checked against its sources)."""
    before: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    path = data / "faithfulness.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        r = json.loads(line)
        before[(r["model"], r["level"])][0] += bool(r["unsupported"])
        before[(r["model"], r["level"])][1] += 1
    events = _event_sources(store)
    rows = store.memory_rows("level IN ('chunk', 'day', 'week')",
                             ["id", "level", "model", "text", "title", "event_ids", "sources",
                              "project", "identifiers", "decisions", "open_tasks", "dates"])
    by_id = {r["id"]: r for r in rows}
    after: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    repeats = 0
    for r in rows:
        if r["level"] == "chunk":
            src = "\n".join(events.get(i, "") for i in r["event_ids"] or []) + "\n" + (
                r["project"] or "")
        else:
            members = [by_id[i] for i in r["sources"] or [] if i in by_id]
            src = "\n".join(f"{m['title']}\n{m['text']}\n" + "\n".join(
                [*(m["identifiers"] or []), *(m["dates"] or [])]) for m in members)
            src += "\n" + "\n".join(_weekdays(m) for m in members)
            repeats += bool(faithful.repeated(r["text"]))
        bad = not faithful.check(r["text"], src).ok
        after[(r["model"], r["level"])][0] += bad
        after[(r["model"], r["level"])][1] += 1
    return {"before": dict(before), "after": dict(after), "repeats": repeats, "rows": rows,
            "events": events}


def _weekdays(m: dict[str, Any]) -> str:
    from datetime import date

    out = []
    for d in m.get("dates") or []:
        try:
            out.append(date.fromisoformat(d).strftime("%A %B"))
        except ValueError:
            continue
    return " ".join(out)


def identifiers_kept(rows: list[dict[str, Any]], events: dict[str, str]
                     ) -> dict[str, tuple[int, int]]:
    """Identifier-looking tokens (the independent extractor's) of each chunk's events that
    its memory's text holds: of their subjects, titles and commands ("activity"), and of
    the saved files' contents ("file contents")."""
    out = {"activity": [0, 0], "file contents": [0, 0]}
    for r in rows:
        if r["level"] != "chunk":
            continue
        have = faithful.Sources(r["text"] + "\n" + r["title"])
        for i in r["event_ids"] or []:
            _, subject, title, text = (events.get(i, "").split("\n", 3) + ["", "", "", ""])[:4]
            for part, body in (("activity", f"{subject}\n{title}"), ("file contents", text)):
                for tok in faithful.tokens(body):
                    out[part][0] += have.has(tok)
                    out[part][1] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}


def decisions_tasks(rows: list[dict[str, Any]], labels: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for column in ("decisions", "open_tasks"):
        items = {" ".join(i.split()) for r in rows if r["level"] == "chunk"
                 for i in (r[column] or [])}
        found = [lb for lb in labels[column] if any(_matches(i, lb) for i in items)]
        right = [i for i in items if any(_matches(i, lb) for lb in labels[column])]
        out[column] = (len(found), len(labels[column]), len(right), len(items))
    return out


def open_context(engine: Any, labels: dict[str, Any]) -> tuple[int, int, int]:
    pack = engine.context("what is still open", 2000)
    md = pack["markdown"]
    got = sum(1 for lb in labels["open_tasks"] if _matches(md, lb))
    return got, len(labels["open_tasks"]), pack["tokens"]


def ingest_seconds(build: Path) -> str:
    log = Path(str(build) + ".log")
    if log.exists():
        m = re.search(r"ingest: exit 0 in ([\d.]+) s", log.read_text())
        if m:
            return f"{float(m.group(1)):.0f} s"
    return "n/a"


def pct(a: int, b: int) -> str:
    return f"{a / b:.2f} ({a}/{b})" if b else "n/a"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", action="append", required=True, metavar="NAME=DIR")
    ap.add_argument("--eval-kit", default=str(Path(__file__).resolve().parents[3] / "shared"
                                              / "eval"))
    ap.add_argument("--set", default="sets/dev-week")
    ap.add_argument("--k", type=int, default=5)
    a = ap.parse_args()
    sys.path.insert(0, a.eval_kit)
    import run as kit  # the kit's question loader and scorer

    from daemon.config import load_config
    from daemon.store.engine import Engine

    labels = json.loads(LABELS.read_text())
    set_dir = str(Path(a.eval_kit) / a.set)
    lines = ["| build | summaries | metric | value |", "|---|---|---|---|"]
    means: dict[bool, list[float]] = defaultdict(list)
    for spec in a.build:
        name, _, d = spec.partition("=")
        build = Path(d)
        os.environ["HOME"] = str(build / "home")
        cfg = load_config(build / "memoryd.toml")
        engine = Engine(cfg)
        summ = cfg.pipeline.summarize

        def row(metric: str, value: str, name: str = name, summ: bool = summ) -> None:
            lines.append(f"| {name} | {'yes' if summ else 'no'} | {metric} | {value} |")

        rec = recall_by_class(engine, kit, set_dir, a.k)
        means[summ].append(rec["all"][0] / rec["all"][1])
        row(f"recall@{a.k}", pct(*rec["all"]))
        for cls in sorted(c for c in rec if c != "all"):
            row(f"recall@{a.k} {cls}", pct(*rec[cls]))
        row("ingest time", ingest_seconds(build))
        f = faithfulness(cfg.data_path, engine.store)
        for (model, level), (bad, n) in sorted(f["before"].items()):
            row(f"hallucination before repair, {level}, {model}", pct(bad, n))
        for (model, level), (bad, n) in sorted(f["after"].items()):
            row(f"unsupported after repair, {level}, {model}", pct(bad, n))
        if any(r["level"] == "chunk" for r in f["rows"]):
            for part, (kept, total) in identifiers_kept(f["rows"], f["events"]).items():
                row(f"identifiers kept in chunk memories, {part}", pct(kept, total))
            row("digests with a repeated sentence", str(f["repeats"]))
            dt = decisions_tasks(f["rows"], labels)
            for column, (found, n, right, items) in dt.items():
                row(f"{column} recall / precision",
                    f"{pct(found, n)} / {pct(right, items)}")
            got, n, tokens = open_context(engine, labels)
            row("open tasks in 'what is still open' (2,000 tokens)",
                f"{got}/{n} in {tokens} tokens")
        engine.close()
    for summ, vals in sorted(means.items()):
        lines.append(f"| mean of {len(vals)} | {'yes' if summ else 'no'} | recall@{a.k} | "
                     f"{sum(vals) / len(vals):.2f} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
