"""The service layer the CLI and the API share; it knows nothing of HTTP."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from typing import Any

from collectors.base import Sink
from daemon import health
from daemon.config import Config
from daemon.errors import InvalidRequest
from daemon.health import Conditions, Problem
from daemon.intake.collect import CollectorRuns
from daemon.intake.journal import Journal
from daemon.intake.privacy import PauseState
from daemon.owners import EVERYONE, Owners, identity, whose
from daemon.recall import timeexpr
from daemon.recall.fresh import fresh_hits, with_fresh
from daemon.recall.hits import Hit
from daemon.store.interface import MemoryEngine
from models.errors import ModelError

FRESH_IN_CONTEXT = 8  # not yet indexed events a context pack may take (a third of its 24)


def hit_json(h: Hit) -> dict[str, Any]:
    """The public search-result shape (a contract: keep these keys)."""
    return {"id": h.id, "source": h.source, "kind": h.kind,
            "ts": h.ts.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "title": h.title, "text": h.text, "score": h.score,
            "device": h.device, "user": h.user}


@dataclass
class MemoryService:
    cfg: Config
    journal: Journal
    engine: MemoryEngine  # the worker's forwarder in the daemon, an Engine in-process
    started: float = 0.0
    collector_runs: CollectorRuns | None = None
    pause: PauseState | None = None
    intake: Sink | None = None  # the privacy gate in front of the journal, for pushed events
    sync: Any = None  # daemon.sync.service.SyncService (the daemon sets it)
    pipeline: Any = None  # daemon.pipeline.steps.Pipeline: each stage's backlog, rate, ETA
    conditions: Conditions | None = None  # problems the daemon's parts saw (health.py)
    approvals: Any = None  # daemon.approvals.queue.Approvals (see its for_service)
    sessions: Any = None  # daemon.api.sessions.SessionStore: the status page's logins

    @property
    def _tz(self) -> tzinfo:
        """The user's zone, where a query's "today" begins (`[search] timezone`)."""
        return timeexpr.user_zone(self.cfg.search.timezone)

    def search(self, query: str, k: int = 10, source: str | None = None,
               since: datetime | None = None, until: datetime | None = None,
               kind: str | None = None, project: str | None = None,
               device: str | None = None, user: str | None = None,
               owners: Owners | None = None, raw: bool = True) -> list[Hit]:
        """Hybrid search; a time expression in `query` is a range unless since/until given.
        `device` and `user` filter by who wrote it (`a,b` for several); `owners` is the
        caller's token's restriction (None: everyone's), which the filters cannot widen;
        `raw` False finds memories and digests only, never raw events (memory:read)."""
        if not query.strip():
            raise InvalidRequest("the query is empty; say what to look for")
        if not 1 <= k <= 200:
            raise InvalidRequest("k must be between 1 and 200")
        since, until = _range(since, until)
        filters: dict[str, Any] = {n: v for n, v in (("kind", kind), ("project", project)) if v}
        o = whose(owners, device, user)
        if not o.everyone:
            filters.update(devices=o.devices, users=o.users)
        if not raw:
            filters["raw"] = False
        hits = self.engine.search(query, k, source=source, since=since, until=until, **filters)
        if not raw or project:  # new events are raw, and have no project until indexed
            return hits
        fresh = fresh_hits(self.journal, query, k, o, identity(self.cfg),
                           max((h.score for h in hits), default=1.0), tz=self._tz,
                           source=source, since=since, until=until, kind=kind)
        return with_fresh(hits, fresh, k) if fresh else hits

    # -- the read path (daemon/recall.py runs these in the engine) -------------------

    # Every read below takes `device`/`user` filters and the token's `owners`, as search.
    def recent(self, limit: int = 20, source: str | None = None, device: str | None = None,
               user: str | None = None, owners: Owners | None = None) -> list[dict[str, Any]]:
        """The newest `limit` raw events, newest first."""
        if not 1 <= limit <= 1000:
            raise InvalidRequest("limit must be between 1 and 1000")
        o = whose(owners, device, user)
        return [hit_json(h) for h in self.engine.recent(limit, source, owners=o)]

    def timeline(self, since: datetime | None, until: datetime | None,
                 source: str | None = None, device: str | None = None,
                 user: str | None = None, owners: Owners | None = None) -> list[dict[str, Any]]:
        """Raw events in [since, until), oldest first (at most the newest 2000)."""
        since, until = _range(since, until)
        o = whose(owners, device, user)
        return [hit_json(h) for h in self.engine.timeline(since, until, source, owners=o)]

    def digest(self, period: str = "day", day: date | None = None, device: str | None = None,
               user: str | None = None, owners: Owners | None = None) -> dict[str, Any]:
        """The day or week digest holding `day` (default today), with its children."""
        if period not in ("day", "week"):
            raise InvalidRequest(f"period must be 'day' or 'week', not {period!r}")
        return dict(self.engine.digest(period, day, owners=whose(owners, device, user)))

    def context(self, query: str, budget_tokens: int, device: str | None = None,
                user: str | None = None, owners: Owners | None = None,
                raw: bool = True) -> dict[str, Any]:
        """A markdown context pack (key `markdown`) for `query` within `budget_tokens`;
        `raw` False packs memories and digests only, never raw events (memory:read)."""
        if not 64 <= budget_tokens <= 200_000:
            raise InvalidRequest("budget_tokens must be between 64 and 200000")
        o = whose(owners, device, user)
        # what the journal holds and the store not yet: a file saved a moment ago
        fresh = tuple(fresh_hits(self.journal, query, FRESH_IN_CONTEXT, o,
                                 identity(self.cfg), 1.0, tz=self._tz)) if raw else ()
        only: dict[str, Any] = {"fresh": fresh} if fresh else {}
        if not raw:
            only["raw"] = False
        return dict(self.engine.context(query, budget_tokens, owners=o, **only))

    def forget(self, since: datetime | None = None, until: datetime | None = None,
               source: str | None = None, query: str | None = None,
               dry_run: bool = False, device: str | None = None, user: str | None = None,
               owners: Owners | None = None) -> dict[str, Any]:
        """Delete matching events and memories from the store (rows, full-text index, old
        versions) and the journal, so a re-index cannot bring them back; return counts."""
        since, until = _range(since, until)
        if not any((since, until, source, query and query.strip())):
            raise InvalidRequest("say what to forget: since/until, a source or a query")
        o = whose(owners, device, user)
        if not o.allows(*identity(self.cfg)):
            # the journal holds only this daemon's own events: a caller restricted to other
            # owners removes from it only the ids it may read (none of them, in practice)
            jsince = juntil = jsource = jquery = None
        else:
            jsince, juntil, jsource, jquery = since, until, source, query
        # Tombstones first, store second: an index step in flight re-reads the tombstones
        # after its commit (daemon/store/engine.py), so whichever commits first, what
        # is forgotten here is not left in the store.
        early = 0 if dry_run else self.journal.forget(
            (), since=jsince, until=juntil, source=jsource, query=jquery)
        out = dict(self.engine.forget(since=since, until=until, source=source, query=query,
                                       dry_run=dry_run, owners=o))
        ids = out.pop("event_ids", [])
        memory_ids = out.pop("memory_ids", [])
        if dry_run:
            out["journal"] = len(ids)
            return out
        out["journal"] = early + self.journal.forget(ids, memory_ids=memory_ids)
        return out

    def own_status(self, owners: Owners | None = None, raw: bool = False) -> dict[str, Any]:
        """What a caller without the admin scope learns of the daemon: whether memory
        is available and why not (health.PUBLIC's words), and how many memories (and,
        with `raw`, events) it may read."""
        problems = self._problems(self.collector_runs.snapshot() if self.collector_runs
                                  else [])
        if self.sync is not None:
            problems += health.sync_problems(self.sync.status())
        try:
            counts = dict(self.engine.counts(owners=owners or EVERYONE))
        except Exception as exc:  # the worker is starting, or the store is unreadable
            problems.append(_unreadable(exc, str(exc)))
            return {"memory": {**health.assess(problems, public=True), "reason": str(exc)}}
        if not raw:
            counts.pop("events", None)
        return {"memory": {**health.assess(problems, public=True), "counts": counts}}

    def status(self, deep: bool = True) -> dict[str, Any]:
        counts = self.journal.counts()
        out: dict[str, Any] = {
            "data_dir": str(self.cfg.data_path),
            "uptime_seconds": round(time.time() - self.started, 1) if self.started else None,
            "journal": counts,
            "collectors": {
                "running": self.collector_runs.snapshot() if self.collector_runs else [],
                "cursors": self.journal.cursors(),
            },
        }
        if self.pipeline is not None:
            out["pipeline"] = self.pipeline.status()
        problems: list[Problem] = []
        if deep:
            try:
                out["engine"] = self.engine.status()
            except Exception as exc:
                out["engine"] = {"error": str(exc)}
                problems.append(_unreadable(exc, f"memory cannot be read: {exc}"))
        out["paused"] = self.pause.paused() if self.pause else None
        problems += self._problems(out["collectors"]["running"])
        if self.sync is not None:  # published memory: say when a target cannot get it
            out["sync"] = self.sync.status()
            problems += health.sync_problems(out["sync"])
        out["memory"] = {**health.assess(problems), "pending": counts["new"]}
        if self.sync is not None:
            sync_codes = ("sync_target_down", "sync_refused")
            out["memory"]["sync_available"] = not any(p.code == "sync_target_down"
                                                      for p in problems)
            why = [p.message for p in problems if p.code in sync_codes]
            if why:
                out["memory"]["reason"] = "; ".join(why)
        return out

    def _problems(self, collectors: list[dict[str, Any]]) -> list[Problem]:
        """Problems seen as they happened, the store's disk, the worker, the collectors."""
        found = list(self.conditions.active()) if self.conditions else []
        if not self.cfg.store.uri:  # a local store: is its disk full or read-only?
            found += health.probe_disk(self.cfg.data_path / "store")
        crash = getattr(self.engine, "crash_loop", None)
        looping = crash() if callable(crash) else None
        if looping is not None:
            found.append(looping)
        return found + health.collector_problems(collectors)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _unreadable(exc: Exception, message: str) -> Problem:
    """Why the engine cannot answer: its embedder cannot load (a model's files are
    missing or wrong: the config names the fix), or the store cannot be read."""
    code = "embedder_failed" if isinstance(exc, ModelError) else "store_unreadable"
    return Problem(code, message, _now())


def _range(since: datetime | None, until: datetime | None) -> tuple[datetime | None,
                                                                     datetime | None]:
    """UTC-aware bounds (a naive time is taken as UTC). A range with since at or after
    until is empty: it matches nothing (search, timeline) and forgets nothing."""
    since, until = (None if t is None else t if t.tzinfo else t.replace(tzinfo=UTC)
                    for t in (since, until))
    return since, until
