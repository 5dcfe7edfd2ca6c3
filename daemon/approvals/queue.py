"""Human approval: routed requests that wait until the user says yes or no.

Given the [approvals] config and a request's plan, `rules.reasons_for` says why the request
needs a human (its task, the caller marked it irreversible, its captured memory would go
to a remote model, its estimated cost). The handler files it (`Approvals.file`) and
waits (`Approvals.wait`); the user answers with `Approvals.decide`, which the CLI, the
status page and the tray all reach through /v1/approvals. No answer within the timeout
denies it, and so does a caller that hangs up.

Every request and every decision (who asked, what, when, why, who decided, how and
why) is a row in <data_dir>/approvals.sqlite3. One row, one arbiter: a decision and a
timeout both change a row only while it is `pending`, so whichever comes first wins and
the other sees it.

Surviving a restart: a caller may send an idempotency key with its request (the
`Idempotency-Key` header). Its row stays `pending` across a daemon restart; the caller
that sends the same request with the same key again re-attaches to it (`file` returns
the same id) and gets the answer; a key sent with a different request is refused (the
row keeps a fingerprint of the request). A row nobody re-attaches to within
[approvals] reattach_seconds of the restart (or before its timeout) is recorded
`abandoned`: the caller did not come back. A row filed without a key cannot be found
again, so a restart abandons it at once.
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
from daemon.sqlite_migrations import Migration, migrate

log = logging.getLogger(__name__)
PENDING, APPROVED, DENIED, TIMED_OUT, ABANDONED = (
    "pending", "approved", "denied", "timed_out", "abandoned")
STATUSES = (PENDING, APPROVED, DENIED, TIMED_OUT, ABANDONED)


class UnknownApproval(KeyError):
    """No approval has this id."""


class AlreadyDecided(ValueError):
    """The approval was decided (or timed out) before this decision arrived."""


class KeyConflict(ValueError):
    """An idempotency key that cannot be used for this request: sent before with a
    different request, already waited on, or its approved request already answered."""


@dataclass(frozen=True)
class Verdict:
    status: str  # approved | denied | timed_out | abandoned | pending (daemon stopping)
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
        if self.status == PENDING:
            return (f"memoryd is restarting while approval {approval_id} waits; it stays "
                    "pending: send the same request with the same Idempotency-Key again "
                    "once memoryd is back to get the answer")
        return f"approval {approval_id} was abandoned: {self.reason}"


def _migrate_1(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE approvals (id TEXT PRIMARY KEY, created REAL NOT NULL, "
               "status TEXT NOT NULL, task TEXT, models TEXT, reasons TEXT, what TEXT, "
               "requested_by TEXT, timeout_seconds REAL, request_id TEXT, decided REAL, "
               "decided_by TEXT, decision_reason TEXT)")
    db.execute("CREATE INDEX approvals_status ON approvals (status, created)")


def _migrate_2_idempotency(db: sqlite3.Connection) -> None:
    """Idempotency key and request fingerprint; when a restart left the row without a
    waiter; when its approved request went back to the caller (used once)."""
    for col in ("idem_key TEXT", "fingerprint TEXT", "orphaned REAL", "answered REAL"):
        db.execute(f"ALTER TABLE approvals ADD COLUMN {col}")
    db.execute("CREATE UNIQUE INDEX approvals_idem_key ON approvals (idem_key) "
               "WHERE idem_key IS NOT NULL")


MIGRATIONS: tuple[Migration, ...] = (_migrate_1, _migrate_2_idempotency)  # append only
_COLUMNS = ("id", "created", "status", "task", "models", "reasons", "what", "requested_by",
            "timeout_seconds", "request_id", "decided", "decided_by", "decision_reason",
            "idem_key", "orphaned", "answered")
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
                "decision_reason = 'the daemon stopped while the request waited, and it "
                "carried no Idempotency-Key, so its caller cannot come back for the answer' "
                "WHERE status = ? AND idem_key IS NULL", (ABANDONED, now, PENDING)).rowcount
            kept = self._db.execute("UPDATE approvals SET orphaned = ? WHERE status = ? "
                                    "AND idem_key IS NOT NULL", (now, PENDING)).rowcount
            self._db.execute("DELETE FROM approvals WHERE created < ?",
                             (now - cfg.keep_days * 86400,))
        if left:
            log.info("approvals: %d requests were still waiting when memoryd stopped; "
                     "marked abandoned (no Idempotency-Key to come back with)", left)
        if kept:
            log.info("approvals: %d requests still wait for their callers to send them "
                     "again (Idempotency-Key) within %g s", kept, cfg.reattach_seconds)
            threading.Thread(target=self._sweep_until_done, name="approvals-reattach",
                             daemon=True).start()

    def _sweep(self) -> float | None:
        """Record as abandoned the rows a restart left without a waiter whose caller did
        not come back in time; return the seconds until the next one is due, None when
        none is left."""
        now = time.time()
        with self._lock:
            rows = self._db.execute(
                "SELECT id, created, timeout_seconds, orphaned FROM approvals WHERE "
                "status = ? AND orphaned IS NOT NULL", (PENDING,)).fetchall()
            due = []
            for aid, created, timeout, orphaned in rows:
                if aid in self._waiting:
                    continue
                end = min(orphaned + self.cfg.reattach_seconds, created + (timeout or 0))
                due.append(end)
                if end <= now:
                    self._settle(aid, ABANDONED, "memoryd", (
                        "the daemon restarted while the request waited and its caller did "
                        f"not send it again (Idempotency-Key) within "
                        f"{self.cfg.reattach_seconds:g} s or before its timeout"))
        later = [d for d in due if d > now]
        return min(later) - now if later else None

    def _sweep_until_done(self) -> None:
        while True:
            try:
                wait = self._sweep()
            except sqlite3.ProgrammingError:  # closed
                return
            if wait is None:
                return
            time.sleep(min(max(wait, 0.05), 5.0))

    # ---- the request's side -------------------------------------------------------
    def file(self, *, task: str, models: list[str], reasons: list[dict[str, str]],
             what: dict[str, Any], requested_by: str, request_id: str = "",
             timeout_seconds: float | None = None, key: str = "",
             fingerprint: str = "") -> str:
        """Record a request that needs approval; return its id. It waits at most
        [approvals] timeout_seconds (or `timeout_seconds`, when the caller asks for less).
        With an idempotency `key` seen before, return that row's id instead (the caller
        re-attaches, e.g. after a restart); raise KeyConflict when the key came with a
        different request (`fingerprint`), is being waited on now, or its approved
        request was already answered. Call from the event loop that will `wait`."""
        loop = asyncio.get_running_loop()
        timeout = self.cfg.timeout_seconds if timeout_seconds is None else min(
            timeout_seconds, self.cfg.timeout_seconds)
        with self._lock:
            if key:
                found = self._reattach(key, fingerprint, loop)
                if found:
                    return found
            while True:
                aid = secrets.token_hex(4)
                if self._db.execute("SELECT 1 FROM approvals WHERE id = ?",
                                    (aid,)).fetchone() is None:
                    break
            with self._db:
                self._db.execute(
                    "INSERT INTO approvals (id, created, status, task, models, reasons, what, "
                    "requested_by, timeout_seconds, request_id, idem_key, fingerprint) "
                    f"VALUES ({', '.join('?' * 12)})",
                    (aid, time.time(), PENDING, task, json.dumps(models),
                     json.dumps(reasons), json.dumps(what, ensure_ascii=False), requested_by,
                     timeout, request_id, key or None, fingerprint or None))
            self._waiting[aid] = (loop, loop.create_future())
        log.info("approval %s pending: %s", aid, "; ".join(r["detail"] for r in reasons))
        return aid

    def _reattach(self, key: str, fingerprint: str,
                  loop: asyncio.AbstractEventLoop) -> str | None:
        """The id of the row filed with `key`, now waited on by this caller; None when
        the key is new. Call under the lock."""
        row = self._db.execute("SELECT id, status, fingerprint, answered FROM approvals "
                               "WHERE idem_key = ?", (key,)).fetchone()
        if row is None:
            return None
        aid, status, was, answered = row
        if was != fingerprint:
            raise KeyConflict(f"the Idempotency-Key was sent before with a different request "
                              f"(approval {aid}); use a new key for a new request")
        if aid in self._waiting:
            raise KeyConflict(f"a request with this Idempotency-Key is already waiting for "
                              f"approval {aid}")
        if status == APPROVED and answered:
            raise KeyConflict(f"approval {aid} for this Idempotency-Key was approved and its "
                              "request already answered; use a new key to ask again")
        fut: asyncio.Future[None] = loop.create_future()
        if status != PENDING:
            fut.set_result(None)
        self._waiting[aid] = (loop, fut)
        with self._db:
            self._db.execute("UPDATE approvals SET orphaned = NULL WHERE id = ?", (aid,))
        log.info("approval %s: its caller came back (Idempotency-Key); it is %s", aid, status)
        return str(aid)

    def answered(self, aid: str) -> None:
        """Record that the approved request was handed to its caller (its key is spent)."""
        with self._lock, self._db:
            self._db.execute("UPDATE approvals SET answered = ? WHERE id = ?",
                             (time.time(), aid))

    async def wait(self, aid: str, gone: Callable[[], Awaitable[bool]] | None = None,
                   poll_seconds: float = 1.0) -> Verdict:
        """Wait for the user's decision on `aid`; the timeout denies it, and so does
        `gone()` turning true (the caller hung up)."""
        started = time.monotonic()
        row = self.get(aid)
        timeout = float(row["timeout_seconds"])
        # from when it was filed, not from now: a caller re-attaching after a restart
        # does not get a fresh timeout
        deadline = started + max(0.0, row["created"] + timeout - time.time())
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
        if row["status"] == PENDING:  # released by `release`: the daemon is stopping
            return Verdict(PENDING, "", "memoryd is restarting",
                           round(time.monotonic() - started, 3))
        return Verdict(row["status"], row["decided_by"] or "", row["decision_reason"] or "",
                       round(time.monotonic() - started, 3))

    def release(self) -> None:
        """The daemon is stopping: let every waiting request answer now (its row stays
        pending for the caller to come back after the restart). Safe in a signal handler."""
        for loop, fut in list(self._waiting.values()):
            loop.call_soon_threadsafe(_wake, fut)

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
