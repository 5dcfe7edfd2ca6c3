"""Human approval: routed requests that wait until the user says yes or no.

Given the [approvals] config and a request's plan, `reasons_for` says why the request
needs a human (its task, the caller marked it irreversible, its captured memory would go
to a remote model, its estimated cost). The handler files it (`Approvals.file`) and
waits (`Approvals.wait`); the user answers with `Approvals.decide`, which the CLI, the
status page and the tray all reach through /v1/approvals. No answer within the timeout
denies it, and so does a caller that hangs up.

Every request and every decision (who asked, what, when, why, who decided, how and
why) is a row in <data_dir>/approvals.sqlite3. The waiting futures live in the daemon's
memory only, so requests still pending when a daemon starts are marked `abandoned`.
One row, one arbiter: a decision and a timeout both change a row only while it is
`pending`, so whichever comes first wins and the other sees it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.config import ApprovalsConfig
from daemon.intake.redact import redact
from daemon.sqlite_migrations import Migration, migrate

log = logging.getLogger(__name__)
PENDING, APPROVED, DENIED, TIMED_OUT, ABANDONED = (
    "pending", "approved", "denied", "timed_out", "abandoned")
STATUSES = (PENDING, APPROVED, DENIED, TIMED_OUT, ABANDONED)
PREVIEW_CHARS = 300


class UnknownApproval(KeyError):
    """No approval has this id."""


class AlreadyDecided(ValueError):
    """The approval was decided (or timed out) before this decision arrived."""


def reasons_for(cfg: ApprovalsConfig, task: str, irreversible: str | bool,
                plan: Any, memory_count: int) -> list[dict[str, str]]:
    """Given the config, the request's task, its `irreversible` mark (False, True or a
    description of the step) and its routing Plan, return why it needs approval: one
    {"reason", "detail"} per rule that applies (empty: it goes ahead)."""
    out = []
    if task in cfg.tasks:
        out.append({"reason": "task",
                    "detail": f"task {task!r} needs approval ([approvals] tasks)"})
    if irreversible and cfg.irreversible:
        # the caller's own words: stored, shown and logged, so redacted like any event
        what = f": {redact(irreversible)}" if isinstance(irreversible, str) else ""
        out.append({"reason": "irreversible",
                    "detail": f"the caller marked this step irreversible{what}"})
    if cfg.memory_remote and plan.needs_memory_approval:
        out.append({"reason": "memory_remote", "detail": (
            f"{memory_count} captured memories would go to the remote model "
            f"{plan.held[0]} (not in router.memory_remote_models)")})
    if cfg.max_cost_usd > 0 and plan.est_cost_usd > cfg.max_cost_usd:
        out.append({"reason": "cost", "detail": (
            f"estimated cost up to ${plan.est_cost_usd:.6f}, above [approvals] "
            f"max_cost_usd = {cfg.max_cost_usd}")})
    return out


def preview(messages: list[Any]) -> str:
    """The last user message, secrets redacted, cut for a human to read."""
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            c = m.get("content")
            text = c if isinstance(c, str) else " ".join(
                str(p.get("text") or "") for p in c or () if isinstance(p, dict))
            text = " ".join(redact(text).split())
            return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "…"
    return ""


@dataclass(frozen=True)
class Verdict:
    status: str  # approved | denied | timed_out | abandoned
    by: str
    reason: str
    waited_seconds: float

    @property
    def approved(self) -> bool:
        return self.status == APPROVED

    def refusal(self, approval_id: str) -> str:
        """The message a refused caller reads."""
        if self.status == DENIED:
            why = f": {self.reason}" if self.reason else ""
            return f"approval {approval_id} was denied by the user ({self.by}){why}"
        if self.status == TIMED_OUT:
            return (f"approval {approval_id} timed out after {self.waited_seconds:.0f} s "
                    "without an answer, so the request was denied; ask the user to "
                    "approve it sooner (memoryd approvals) or raise [approvals] "
                    "timeout_seconds")
        return f"approval {approval_id} was abandoned: {self.reason}"


def _migrate_1(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE approvals (id TEXT PRIMARY KEY, created REAL NOT NULL, "
               "status TEXT NOT NULL, task TEXT, models TEXT, reasons TEXT, what TEXT, "
               "requested_by TEXT, timeout_seconds REAL, request_id TEXT, decided REAL, "
               "decided_by TEXT, decision_reason TEXT)")
    db.execute("CREATE INDEX approvals_status ON approvals (status, created)")


MIGRATIONS: tuple[Migration, ...] = (_migrate_1,)  # append only; see sqlite_migrations
_COLUMNS = ("id", "created", "status", "task", "models", "reasons", "what", "requested_by",
            "timeout_seconds", "request_id", "decided", "decided_by", "decision_reason")
_JSON = ("models", "reasons", "what")


class Approvals:
    """The pending queue and the record of decisions for one data dir."""

    def __init__(self, path: Path, cfg: ApprovalsConfig) -> None:
        self.path = path
        self.cfg = cfg
        self._lock = threading.RLock()
        self._waiting: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=10, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        with self._lock:
            migrate(self._db, MIGRATIONS, f"the approvals queue {path}")
        with self._lock, self._db:
            now = time.time()
            left = self._db.execute(
                "UPDATE approvals SET status = ?, decided = ?, decided_by = 'memoryd', "
                "decision_reason = 'the daemon stopped while the request waited' "
                "WHERE status = ?", (ABANDONED, now, PENDING)).rowcount
            self._db.execute("DELETE FROM approvals WHERE created < ?",
                             (now - cfg.keep_days * 86400,))
        if left:
            log.info("approvals: %d requests were still waiting when memoryd stopped; "
                     "marked abandoned", left)

    # ---- the request's side -------------------------------------------------------
    def file(self, *, task: str, models: list[str], reasons: list[dict[str, str]],
             what: dict[str, Any], requested_by: str, request_id: str = "",
             timeout_seconds: float | None = None) -> str:
        """Record a request that needs approval; return its id. It waits at most
        [approvals] timeout_seconds (or `timeout_seconds`, when the caller asks for less).
        Call from the event loop that will `wait` for it."""
        loop = asyncio.get_running_loop()
        timeout = self.cfg.timeout_seconds if timeout_seconds is None else min(
            timeout_seconds, self.cfg.timeout_seconds)
        with self._lock:
            while True:
                aid = secrets.token_hex(4)
                if self._db.execute("SELECT 1 FROM approvals WHERE id = ?",
                                    (aid,)).fetchone() is None:
                    break
            with self._db:
                self._db.execute(
                    f"INSERT INTO approvals ({', '.join(_COLUMNS[:10])}) VALUES "
                    f"({', '.join('?' * 10)})",
                    (aid, time.time(), PENDING, task, json.dumps(models),
                     json.dumps(reasons), json.dumps(what, ensure_ascii=False), requested_by,
                     timeout, request_id))
            self._waiting[aid] = (loop, loop.create_future())
        log.info("approval %s pending: %s", aid, "; ".join(r["detail"] for r in reasons))
        return aid

    async def wait(self, aid: str, gone: Callable[[], Awaitable[bool]] | None = None,
                   poll_seconds: float = 1.0) -> Verdict:
        """Wait for the user's decision on `aid`; the timeout denies it, and so does
        `gone()` turning true (the caller hung up)."""
        started = time.monotonic()
        timeout = float(self.get(aid)["timeout_seconds"])
        deadline = started + timeout
        _, fut = self._waiting[aid]
        try:
            while not fut.done():
                left = deadline - time.monotonic()
                if left <= 0:
                    self._settle(aid, TIMED_OUT, "memoryd", f"no answer within {timeout:g} s")
                    break
                try:
                    await asyncio.wait_for(asyncio.shield(fut), min(left, poll_seconds))
                except TimeoutError:
                    if gone is not None and await gone():
                        self._settle(aid, ABANDONED, "memoryd",
                                     "the caller hung up before a decision")
                        break
        finally:
            self._waiting.pop(aid, None)
        row = self.get(aid)
        return Verdict(row["status"], row["decided_by"] or "", row["decision_reason"] or "",
                       round(time.monotonic() - started, 3))

    # ---- the user's side ----------------------------------------------------------
    def decide(self, aid: str, approve: bool, by: str, reason: str = "") -> dict[str, Any]:
        """Approve or deny a pending request; return its row. Raise UnknownApproval for
        an unknown id, AlreadyDecided when it was settled before."""
        status = APPROVED if approve else DENIED
        if not self._settle(aid, status, by, reason):
            row = self.get(aid)
            raise AlreadyDecided(
                f"approval {aid} is already {row['status']} (by {row['decided_by']} at "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(row['decided']))} UTC)")
        log.info("approval %s %s by %s%s", aid, status, by, f": {reason}" if reason else "")
        return self.get(aid)

    def _settle(self, aid: str, status: str, by: str, reason: str) -> bool:
        with self._lock:
            with self._db:
                n = self._db.execute(
                    "UPDATE approvals SET status = ?, decided = ?, decided_by = ?, "
                    "decision_reason = ? WHERE id = ? AND status = ?",
                    (status, time.time(), by, reason[:500], aid, PENDING)).rowcount
            if not n:
                self.get(aid)  # raises UnknownApproval for an unknown id
                return False
            waiter = self._waiting.get(aid)
        if waiter is not None:
            loop, fut = waiter
            loop.call_soon_threadsafe(_wake, fut)
        return True

    def get(self, aid: str) -> dict[str, Any]:
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM approvals WHERE id = ?",
                                   (aid,)).fetchone()
        if row is None:
            raise UnknownApproval(f"no approval {aid!r}; `memoryd approvals --all` lists them")
        return _row(row)

    def list(self, status: str = PENDING, limit: int = 100) -> list[dict[str, Any]]:
        """The newest approvals with this status ("all" for every one), newest first."""
        sql = f"SELECT {', '.join(_COLUMNS)} FROM approvals"
        args: tuple[Any, ...] = ()
        if status != "all":
            sql += " WHERE status = ?"
            args = (status,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY created DESC LIMIT ?",
                                    (*args, limit)).fetchall()
        return [_row(r) for r in rows]

    def pending_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM approvals WHERE status = ?",
                                        (PENDING,)).fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _row(r: tuple[Any, ...]) -> dict[str, Any]:
    out = dict(zip(_COLUMNS, r, strict=True))
    for k in _JSON:
        out[k] = json.loads(out[k]) if out[k] else None
    if out["status"] == PENDING:
        out["expires"] = out["created"] + (out["timeout_seconds"] or 0)
    return out


_MAKING = threading.Lock()


def for_service(service: Any) -> Approvals:
    """The service's one approvals queue (the chat handler files requests in it, the
    /v1/approvals routes decide them), made on first use and kept on the service."""
    with _MAKING:
        if service.approvals is None:
            cfg = service.cfg
            service.approvals = Approvals(cfg.data_path / "approvals.sqlite3", cfg.approvals)
        return service.approvals
