"""The memory engine's part of `memoryd status`, as lines a user can read.

`/v1/status` gives the engine's figures as the worker and the resident reader report them
(daemon/store/worker.py, engine.py, reader.py); `memoryd status --json` prints them whole.
Here they are said in words: what the store holds, which processes run and what they
hold loaded, who answered the reads, and commit conflicts only when there were some.
"""

from __future__ import annotations

from typing import Any


def engine_lines(eng: dict[str, Any]) -> list[str]:
    """The engine's status as `label:   text` lines (keys it lacks are left out)."""
    lines = []
    store = eng.get("store")
    if isinstance(store, dict):
        cache = eng.get("store_cache_mb")
        lines.append(f"store:    {store.get('events', 0):,} events, "
                     f"{store.get('memories', 0):,} memories"
                     + (f" (cache {cache:g} MB)" if cache else ""))
    worker = eng.get("worker")
    loaded = [name for name, on in (eng.get("models_loaded") or {}).items() if on]
    if worker or loaded:
        lines.append(f"worker:   {worker or 'in this process'}, models loaded: "
                     f"{', '.join(loaded) or 'none'}")
    reader = eng.get("reader")
    if reader:
        lines.append(f"reader:   {reader}{_reads(eng)}")
    conflicts = {path: c for path, c in (eng.get("store_conflicts") or {}).items()
                 if c.get("retried") or c.get("gave_up")}
    if conflicts:
        lines.append("conflicts: " + "; ".join(
            f"{path} {c.get('retried', 0)} retried, {c.get('gave_up', 0)} gave up"
            for path, c in sorted(conflicts.items())))
    return lines


def _reads(eng: dict[str, Any]) -> str:
    served = eng.get("reads_served") or {}
    total = sum(served.values())
    text = ""
    if total:
        by_worker = served.get("worker", 0)
        text = f", {total:,} read{'s' if total != 1 else ''} answered" + (
            f" ({by_worker:,} by the worker)" if by_worker else "")
    shed = (eng.get("reader_memory") or {}).get("last_shed_mb")
    if shed:
        text += f", gave back {shed:g} MB when last idle"
    return text
