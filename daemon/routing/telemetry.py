"""Telemetry: every model attempt, written off the request path, and what it tells.

`Telemetry.record` only appends to a queue; a background thread writes batches into
<data_dir>/telemetry.sqlite3 (WAL, so the daemon and the worker both write to it).
`summary()` answers the questions a user asks of it: which tasks eat the tokens; cost,
latency and failure rate per model; which fallback recovered from which failure; which
model is overqualified; which tasks could move local. daemon/routing/metrics.py serves
it as /metrics.
The `decisions` table keeps each request's explained routing decision (daemon/explain.py);
`recent_decisions()` reads the newest.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

from daemon.sqlite_migrations import Migration, migrate, run_script

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attempt:
    ts: float
    request_id: str
    route: str  # "api", "api-stream", "pipeline", "probe"
    task: str
    model: str
    backend: str
    privacy: str
    tokens_in: int
    tokens_out: int
    cost_usd: float
    latency_ms: float
    ttft_ms: float | None
    outcome: str  # ok | error | skipped
    error_class: str  # "" when ok
    fallback_depth: int
    memory_used: int  # memories placed in the prompt
    tools: int = 0  # 1 when the request offered tools (so its tool calls were checked)


_COLUMNS = [f.name for f in fields(Attempt)]
MAX_DECISIONS = 2000
PRUNE_EVERY_SECONDS = 3600.0  # how often the writer deletes attempts past keep_days


@dataclass(frozen=True)
class Decision:
    """Why a request went where it went: the explanation its answer carried."""

    ts: float
    request_id: str
    task: str
    model: str  # the model that served it ("" when none did)
    route: str
    explanation: dict[str, Any]


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=10, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    migrate(db, MIGRATIONS, f"routing telemetry {path}")
    return db


def _m1_attempts_and_decisions(db: sqlite3.Connection) -> None:
    """The attempts and decisions tables, and attempts.tools (requests that offered tools).

    Files from before numbered migrations (version 0) may hold the tables already, with
    or without the tools column: this migration completes them."""
    run_script(db, """
        CREATE TABLE IF NOT EXISTS attempts (ts REAL, request_id TEXT, route TEXT, task TEXT,
            model TEXT, backend TEXT, privacy TEXT, tokens_in INTEGER, tokens_out INTEGER,
            cost_usd REAL, latency_ms REAL, ttft_ms REAL, outcome TEXT, error_class TEXT,
            fallback_depth INTEGER, memory_used INTEGER);
        CREATE INDEX IF NOT EXISTS attempts_ts ON attempts (ts);
        CREATE INDEX IF NOT EXISTS attempts_request ON attempts (request_id);
        -- one explained routing decision per request (routing/explain.py), the newest
        -- MAX_DECISIONS kept
        CREATE TABLE IF NOT EXISTS decisions (request_id TEXT PRIMARY KEY, ts REAL, task TEXT,
            model TEXT, route TEXT, explanation TEXT);
        CREATE INDEX IF NOT EXISTS decisions_ts ON decisions (ts)
    """)
    if "tools" not in {r[1] for r in db.execute("PRAGMA table_info(attempts)")}:
        db.execute("ALTER TABLE attempts ADD COLUMN tools INTEGER DEFAULT 0")


# Ordered schema changes; PRAGMA user_version counts how many have run. Append only.
MIGRATIONS: tuple[Migration, ...] = (_m1_attempts_and_decisions,)


class Telemetry:
    """Records attempts in batches from a background thread; `enabled=False` drops them."""

    def __init__(self, path: Path, enabled: bool = True, flush_seconds: float = 0.25,
                 keep_days: float = 90.0) -> None:
        self.path = path
        self.enabled = enabled
        self.keep_days = keep_days  # attempts older than this are deleted (0: kept)
        self._queue: queue.SimpleQueue[Attempt | Decision | None] = queue.SimpleQueue()
        self._flush_seconds = flush_seconds
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()

    def record(self, attempt: Attempt | Decision) -> None:
        if not self.enabled:
            return
        self._idle.clear()
        self._queue.put(attempt)
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._writer, name="telemetry",
                                                    daemon=True)
                    self._thread.start()

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything recorded so far is on disk."""
        self._idle.wait(timeout)

    def _writer(self) -> None:
        db = connect(self.path)
        insert = f"INSERT INTO attempts ({', '.join(_COLUMNS)}) VALUES " \
                 f"({', '.join('?' for _ in _COLUMNS)})"
        pruned = float("-inf")
        while True:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            time.sleep(self._flush_seconds)  # let a burst gather into one transaction
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    batch.append(item)
            decisions = [d for d in batch if isinstance(d, Decision)]
            try:
                with db:
                    db.executemany(insert, [astuple(a) for a in batch
                                            if isinstance(a, Attempt)])
                    if decisions:
                        _write_decisions(db, decisions)
            except sqlite3.Error as exc:  # telemetry never breaks the real work
                log.warning("telemetry: %d attempts not recorded: %s", len(batch), exc)
            if self.keep_days > 0 and time.monotonic() - pruned >= PRUNE_EVERY_SECONDS:
                pruned = time.monotonic()
                self._prune(db)
            if self._queue.empty():
                self._idle.set()
        db.close()


    def _prune(self, db: sqlite3.Connection) -> None:
        try:
            with db:
                gone = db.execute("DELETE FROM attempts WHERE ts < ?", (
                    time.time() - self.keep_days * 86400,)).rowcount
        except sqlite3.Error as exc:
            log.warning("telemetry: old attempts not deleted: %s", exc)
            return
        if gone:
            log.info("telemetry: deleted %d attempts older than %g days", gone, self.keep_days)


def _write_decisions(db: sqlite3.Connection, decisions: list[Decision]) -> None:
    db.executemany(
        "INSERT OR REPLACE INTO decisions (request_id, ts, task, model, route, explanation) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(d.request_id, d.ts, d.task, d.model, d.route,
          json.dumps(d.explanation, ensure_ascii=False, default=str)) for d in decisions])
    db.execute("DELETE FROM decisions WHERE rowid IN (SELECT rowid FROM decisions "
               "ORDER BY ts DESC LIMIT -1 OFFSET ?)", (MAX_DECISIONS,))


def recent_decisions(path: Path, limit: int = 50, request_id: str = "") -> list[dict[str, Any]]:
    """Given the telemetry database, return the newest explained decisions (or the one for
    `request_id`), newest first, each {"ts", "request_id", "task", "model", "route",
    "explanation"}."""
    if not path.exists():
        return []
    db = connect(path)
    try:
        if request_id:
            cur = db.execute("SELECT ts, request_id, task, model, route, explanation FROM "
                             "decisions WHERE request_id = ?", (request_id,))
        else:
            cur = db.execute("SELECT ts, request_id, task, model, route, explanation FROM "
                             "decisions ORDER BY ts DESC LIMIT ?", (limit,))
        rows = cur.fetchall()
    finally:
        db.close()
    return [{"ts": ts, "request_id": rid, "task": task, "model": model, "route": route,
             "explanation": json.loads(exp)} for ts, rid, task, model, route, exp in rows]


def _rows(db: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
    cur = db.execute(sql, args)
    names = [d[0] for d in cur.description]
    return [{n: (round(v, 6) if isinstance(v, float) else v) for n, v in zip(names, r,
                                                                             strict=True)}
            for r in cur.fetchall()]


def summary(path: Path, since: float = 0.0) -> dict[str, Any]:
    """Given the telemetry database, return the answers, each a list of numeric rows."""
    if not path.exists():
        return {"attempts": 0, "since": since, "tasks_by_tokens": [], "models": [],
                "fallback_recoveries": [], "overqualified": [], "could_move_local": [],
                "tool_calls": [], "tool_call_repairs": []}
    db = connect(path)
    try:
        a = (since,)
        total = db.execute("SELECT count(*) FROM attempts WHERE ts >= ?", a).fetchone()[0]
        tasks = _rows(db, """
            SELECT task, sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out,
                   sum(tokens_in + tokens_out) AS tokens, count(*) AS attempts,
                   sum(cost_usd) AS cost_usd
            FROM attempts WHERE ts >= ? AND outcome != 'skipped'
            GROUP BY task ORDER BY tokens DESC""", a)
        models = _rows(db, """
            SELECT model, backend, privacy, count(*) AS attempts,
                   sum(outcome = 'ok') AS ok, sum(outcome = 'error') AS errors,
                   round(1.0 * sum(outcome = 'error') / count(*), 4) AS failure_rate,
                   sum(cost_usd) AS cost_usd, sum(tokens_in) AS tokens_in,
                   sum(tokens_out) AS tokens_out,
                   avg(CASE WHEN outcome = 'ok' THEN latency_ms END) AS avg_latency_ms,
                   max(CASE WHEN outcome = 'ok' THEN latency_ms END) AS max_latency_ms,
                   avg(ttft_ms) AS avg_ttft_ms
            FROM attempts WHERE ts >= ? AND outcome != 'skipped'
            GROUP BY model ORDER BY attempts DESC""", a)
        recoveries = _rows(db, """
            SELECT f.model AS failed_model, f.error_class AS failure, s.model AS recovered_by,
                   count(*) AS times
            FROM attempts s JOIN attempts f
              ON f.request_id = s.request_id AND f.outcome != 'ok'
             AND f.fallback_depth < s.fallback_depth
            WHERE s.outcome = 'ok' AND s.fallback_depth > 0 AND s.ts >= ?
            GROUP BY failed_model, failure, recovered_by ORDER BY times DESC""", a)
        per_task = _rows(db, """
            SELECT task, model, privacy, count(*) AS attempts,
                   1.0 * sum(outcome = 'ok') / count(*) AS success_rate,
                   avg(CASE WHEN outcome = 'ok' THEN cost_usd END) AS avg_cost_usd,
                   sum(cost_usd) AS cost_usd, sum(tokens_in + tokens_out) AS tokens
            FROM attempts WHERE ts >= ? AND outcome != 'skipped'
            GROUP BY task, model""", a)
        tool_calls = _tool_calls(db, a)
    finally:
        db.close()
    return {"attempts": total, "since": since, "tasks_by_tokens": tasks, "models": models,
            "fallback_recoveries": recoveries, "overqualified": _overqualified(per_task),
            "could_move_local": _could_move_local(per_task), **tool_calls}


BAD_TOOL_CALL = "bad_tool_call:"


def _tool_calls(db: sqlite3.Connection, a: tuple[Any, ...]) -> dict[str, Any]:
    """Which model fails at tool calling and how often, and which fallback repaired it.

    `tool_calls`: per model, its answers to requests that offered tools, how many of
    those had broken calls (`malformed`, and `malformed_rate` of the answers), how many a
    later model in the chain repaired, and the faults by kind. `tool_call_repairs`: per
    (broken model, fault, model that then answered well), how often."""
    per_model = _rows(db, f"""
        SELECT model, count(*) AS answers,
               sum(error_class LIKE '{BAD_TOOL_CALL}%') AS malformed,
               round(1.0 * sum(error_class LIKE '{BAD_TOOL_CALL}%') / count(*), 4)
                 AS malformed_rate,
               sum(error_class LIKE '{BAD_TOOL_CALL}%' AND EXISTS (
                   SELECT 1 FROM attempts s WHERE s.request_id = f.request_id
                   AND s.outcome = 'ok' AND s.fallback_depth > f.fallback_depth)) AS repaired
        FROM attempts f
        WHERE ts >= ? AND tools = 1
          AND (outcome = 'ok' OR error_class LIKE '{BAD_TOOL_CALL}%')
        GROUP BY model ORDER BY malformed_rate DESC, answers DESC""", a)
    faults: dict[str, list[str]] = {}
    for model, why, n in db.execute(f"""
            SELECT model, substr(error_class, {len(BAD_TOOL_CALL) + 1}), count(*)
            FROM attempts WHERE ts >= ? AND tools = 1
              AND error_class LIKE '{BAD_TOOL_CALL}%'
            GROUP BY model, error_class ORDER BY count(*) DESC""", a):
        faults.setdefault(model, []).append(f"{why}:{n}")
    for row in per_model:
        row["faults"] = ", ".join(faults.get(row["model"], [])) or "-"
    repairs = _rows(db, f"""
        SELECT f.model AS failed_model, substr(f.error_class, {len(BAD_TOOL_CALL) + 1})
                 AS fault, s.model AS repaired_by, count(*) AS times
        FROM attempts s JOIN attempts f
          ON f.request_id = s.request_id AND f.error_class LIKE '{BAD_TOOL_CALL}%'
         AND f.fallback_depth < s.fallback_depth
        WHERE s.outcome = 'ok' AND s.ts >= ?
        GROUP BY failed_model, fault, repaired_by ORDER BY times DESC""", a)
    return {"tool_calls": per_model, "tool_call_repairs": repairs}


GOOD = 0.9  # a model "succeeds at" a task when at least this share of its attempts is ok


def _overqualified(per_task: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Expensive models doing a task that a cheaper model also succeeds at."""
    out = []
    for row in per_task:
        cheaper = [r for r in per_task if r["task"] == row["task"] and r["model"] != row["model"]
                   and r["success_rate"] >= GOOD
                   and (r["avg_cost_usd"] or 0.0) < (row["avg_cost_usd"] or 0.0)]
        if row["success_rate"] >= GOOD and cheaper:
            best = min(cheaper, key=lambda r: r["avg_cost_usd"] or 0.0)
            per_call = (row["avg_cost_usd"] or 0.0) - (best["avg_cost_usd"] or 0.0)
            out.append({"task": row["task"], "model": row["model"],
                        "avg_cost_usd": row["avg_cost_usd"], "cheaper_model": best["model"],
                        "cheaper_avg_cost_usd": best["avg_cost_usd"],
                        "cheaper_success_rate": round(best["success_rate"], 4),
                        "saving_usd": round(per_call * row["attempts"], 6)})
    return sorted(out, key=lambda r: -r["saving_usd"])


def _could_move_local(per_task: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tasks sent to remote models that a local model already does well."""
    out = []
    for task in sorted({r["task"] for r in per_task}):
        rows = [r for r in per_task if r["task"] == task]
        remote = [r for r in rows if r["privacy"] == "remote"]
        local = [r for r in rows if r["privacy"] == "local" and r["success_rate"] >= GOOD]
        if remote and local:
            best = max(local, key=lambda r: r["success_rate"])
            out.append({"task": task, "remote_attempts": sum(r["attempts"] for r in remote),
                        "remote_cost_usd": round(sum(r["cost_usd"] or 0.0 for r in remote), 6),
                        "remote_tokens": sum(r["tokens"] or 0 for r in remote),
                        "local_model": best["model"],
                        "local_success_rate": round(best["success_rate"], 4)})
    return sorted(out, key=lambda r: -r["remote_cost_usd"])
