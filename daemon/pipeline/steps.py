"""Pipeline v1: journal → index (embed, store) → chunk → summarize → memories.

`step` does one bounded round of work and is what the scheduler runs; `drain` repeats
it until the journal is empty (used by `ingest --once`). Progress is recorded in the
journal only after the store has the rows, and store writes are upserts by stable id,
so a crash anywhere in between repeats work but never loses or duplicates it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from daemon import backoff
from daemon.config import Config
from daemon.errors import RetryableError
from daemon.health import Conditions
from daemon.intake.journal import INDEXED, NEW, SUMMARIZED, Journal
from daemon.pipeline.budget import CpuBudget, Progress
from daemon.pipeline.chunking import Chunk, chunk_events
from daemon.recall.timeexpr import user_zone
from daemon.store.interface import MemoryEngine
from models.errors import ModelError

log = logging.getLogger(__name__)
EXTRACTED_PER_CALL = 16  # chunks a summary step may write per model call it may make
SUMMARY_BACKOFF = 5.0  # seconds before summaries are tried again after a failure
SUMMARY_BACKOFF_MAX = 60.0
# While summaries write chunk memories of past days (a backfill, late events), those days'
# digests follow at most this often, instead of at the next [compaction] interval.
DIGESTS_FOLLOW_SECONDS = 600.0
DIGESTS_PER_FOLLOW = 8  # digests a follow or a scheduled compaction writes: a week's
RECENT_DAYS = 7  # history this recent is summarized first and, extracted, outside the budget
ProgressFn = Callable[[str, int, int], None]


@dataclass
class StepReport:
    indexed: int = 0
    summarized_chunks: int = 0
    summarized_events: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def progressed(self) -> bool:
        return bool(self.indexed or self.summarized_chunks)


class Pipeline:
    def __init__(self, cfg: Config, journal: Journal, engine: MemoryEngine,
                 conditions: Conditions | None = None) -> None:
        self.cfg = cfg
        self.conditions = conditions or Conditions()  # summarizer_failed, for /v1/status
        self.journal = journal
        self.engine = engine
        self._index_lock = threading.Lock()
        self._summary_lock = threading.Lock()
        self.last_error: str | None = None
        # After a failed summary (model down, store disk full) the next waits, doubling up
        # to SUMMARY_BACKOFF_MAX: a model call that cannot be stored is CPU thrown away.
        self._summary_failures = 0
        self._summary_hold_until = 0.0
        # Summaries and digests share the machine with its user: at most this CPU share.
        self.budget = CpuBudget(cfg.compaction.max_cpu_percent)
        self.progress = Progress()
        self._chunks_since_digests = False
        self._digests_followed = time.monotonic()

    def index_step(self) -> int:
        """Make every journaled event searchable (up to one batch), the newest first (what
        was just done, then today, then older history: a backfill's last days are
        searchable by meaning in seconds); return how many."""
        with self._index_lock:
            events = self.journal.at_stage(NEW, self.cfg.pipeline.batch_events, newest=True)
            if not events:
                return 0
            self.engine.index(events)
            self.journal.advance([e.id for e in events], INDEXED)
            self.progress.record("index", len(events))
            log.debug("indexed %d events", len(events))
            return len(events)

    def summary_step(self, *, flush: bool = False, max_chunks: int = 4,
                     now: datetime | None = None, older: bool = True) -> StepReport:
        """Summarize closed activity chunks: up to `max_chunks` the model reads, and up to
        EXTRACTED_PER_CALL times as many in all (an extracted memory costs one embedding);
        `older` False: none older than RECENT_DAYS."""
        report = StepReport()
        p = self.cfg.pipeline
        if not p.summarize:
            return report
        if not flush and time.monotonic() < self._summary_hold_until:
            return report
        # The CPU budget bounds model work and the summaries of history older than
        # RECENT_DAYS; the last days' extracted memories (no model) go first, unheld.
        recent = (now or datetime.now(UTC)) - timedelta(days=RECENT_DAYS)
        model_reads = self.cfg.compaction.chunk_model_mode != "never"
        asked = 0  # model calls: `max_chunks` of them; chunks it does not read are cheap
        with self._summary_lock:
            chunks = [c for c in self.next_chunks(flush=flush, now=now)
                      if older or c.end >= recent][:max_chunks * EXTRACTED_PER_CALL]
            if not model_reads:  # no model reads a chunk: many at a time
                self._summarize_extracted(chunks, recent, flush, report)
                return report
            for chunk in chunks:  # a model may read each: all inside the budget
                if asked >= max_chunks or (not flush and not self.budget.ready()):
                    break
                try:
                    with self.budget.spend(enabled=not flush) as charge:
                        result = self.engine.summarize(list(chunk.events))
                        if result.get("model_asked", True):
                            asked += 1
                        elif chunk.end >= recent:
                            charge.waive()
                except (ModelError, RetryableError) as exc:
                    self._summary_failed(exc, report)
                    break
                self._summary_failures = 0
                if result.get("model_asked", True):  # an extracted memory says nothing of it
                    self.conditions.clear("summarizer_failed")
                self._summarized([chunk], report)
                log.info("summarized %d %s events in %.1f s (%d tokens)", len(chunk.events),
                         chunk.source, result.get("seconds", 0.0), result.get("tokens", 0))
        return report

    def _summarize_extracted(self, chunks: list[Chunk], recent: datetime, flush: bool,
                             report: StepReport) -> None:
        """Write the extracted memories of `chunks` (no model reads them) in two batches:
        the last RECENT_DAYS' first, unheld and uncharged, then older history's inside the
        CPU budget (one charge for the batch)."""
        new = [c for c in chunks if c.end >= recent]
        old = [c for c in chunks if c.end < recent]
        for batch, budgeted in ((new, False), (old, not flush)):
            if not batch or (budgeted and not self.budget.ready()):
                continue
            started = time.monotonic()
            try:
                with self.budget.spend(enabled=budgeted):
                    self.engine.summarize_many([list(c.events) for c in batch])
            except (ModelError, RetryableError) as exc:
                self._summary_failed(exc, report)
                return
            self._summary_failures = 0
            self._summarized(batch, report)
            log.info("summarized %d chunks (%d events) from their events in %.1f s",
                     len(batch), sum(len(c.events) for c in batch), time.monotonic() - started)

    def _summarized(self, chunks: list[Chunk], report: StepReport) -> None:
        events = [e.id for c in chunks for e in c.events]
        self.journal.advance(events, SUMMARIZED)
        report.summarized_chunks += len(chunks)
        report.summarized_events += len(events)
        self.progress.record("summarize", len(events))

    def _summary_failed(self, exc: Exception, report: StepReport) -> None:
        self.last_error = f"summarizing failed: {exc}"
        self._summary_failures += 1
        wait = backoff.delay(SUMMARY_BACKOFF, self._summary_failures, cap=SUMMARY_BACKOFF_MAX)
        self._summary_hold_until = time.monotonic() + wait
        log.warning("%s; the events stay searchable and will be summarized later "
                    "(next try in %.0f s)", self.last_error, wait)
        report.errors.append(str(exc))
        self.conditions.report(
            "summarizer_failed", f"the summarizer is failing ({exc}); new "
            "activity is searchable but not summarized until it works again")

    def next_chunks(self, *, flush: bool = False,
                    now: datetime | None = None) -> list[Chunk]:
        """The closed chunks to summarize next, newest first: the latest events by time
        (today, then the last days, then older history). A chunk that may continue past
        the oldest event read (or into history not indexed yet: the index goes newest
        first) is left for a later round, when it is read whole."""
        p = self.cfg.pipeline
        limit = p.batch_events * 4
        events = self.journal.at_stage(INDEXED, limit, newest=True)
        chunks = chunk_events(events, gap_seconds=p.chunk_gap_seconds,
                              max_events=p.chunk_max_events, now=now or datetime.now(UTC),
                              close_after_seconds=p.chunk_close_after_seconds, flush=flush,
                              tz=user_zone(self.cfg.search.timezone))
        if events and (len(events) >= limit or self.journal.more_than(NEW, 0)):
            oldest = min(e.ts for e in events)
            whole = [c for c in chunks
                     if (c.start - oldest).total_seconds() > p.chunk_gap_seconds]
            chunks = whole or chunks
        return sorted(chunks, key=lambda c: (c.end, c.id), reverse=True)

    def status(self) -> dict[str, Any]:
        """Each stage's backlog, recent rate (events/s) and time to done (None: unknown)."""
        counts = self.journal.counts()
        summarizing = self.cfg.pipeline.summarize
        backlog = {"index": counts["new"],
                   "summarize": counts["new"] + counts["indexed"] if summarizing else 0}
        return {"stages": self.progress.report(backlog),
                "cpu_budget_percent": self.budget.percent,
                "cpu_used_percent": self.budget.used_percent()}

    def _report_digest_model(self, errors: list[str], written: list[str]) -> None:
        """A summarizer that fails only on digests (no chunk asks it by default) is still
        a degraded memory the user is told about; a digest it wrote clears that."""
        if errors:
            self.conditions.report(
                "summarizer_failed", f"the summarizer is failing ({errors[-1]}); activity is "
                "searchable and its memories are extracted, but day and week digests are "
                "not summarized by the model until it works again")
        elif written:
            self.conditions.clear("summarizer_failed")

    def summarize_then_digest_past(self) -> StepReport:
        """The daemon's summary job: `summary_step`, then, at most every
        DIGESTS_FOLLOW_SECONDS while it writes chunk memories, the digests of the past
        days they changed (DIGESTS_PER_FOLLOW at most, newest first). A backfill's days are
        digested as their summaries land, not an hour later; today's digest waits for the
        compaction interval as before (it changes all day: digesting it after every chunk
        would cost the model time the budget keeps). While digests are due, older
        history's chunk memories wait for them: both spend the CPU budget, and the last
        days' digests come first. While a backfill is being indexed, both wait for it
        (`indexing_behind`): everything is searchable before a model writes a digest."""
        behind = self.indexing_behind()
        due = (self._chunks_since_digests
               and time.monotonic() - self._digests_followed >= DIGESTS_FOLLOW_SECONDS)
        report = self.summary_step(older=not (due or behind))
        self._chunks_since_digests |= report.summarized_chunks > 0
        if due and not behind and self.budget.ready():
            self._digests_followed = time.monotonic()
            self._chunks_since_digests = False
            self.compact_step(DIGESTS_PER_FOLLOW, past_only=True)
        return report

    def indexing_behind(self) -> bool:
        """More than a batch of events waits to be indexed: a backfill (or a burst) is
        being made searchable, and the digests' model calls and older history's chunk
        memories, which take the same cores, wait for it. The last days' chunk memories
        (no model) go on."""
        return self.journal.more_than(NEW, self.cfg.pipeline.batch_events)

    def scheduled_compaction(self) -> list[str]:
        """The daemon's compaction job: at most DIGESTS_PER_FOLLOW digests a run, so a
        backfill's 90 stale days never hold the summaries back for half an hour; the
        rest follow at the next runs. Not while a backfill is being indexed."""
        if self.indexing_behind():
            log.info("compaction waits: events are still being made searchable")
            return []
        return self.compact_step(DIGESTS_PER_FOLLOW)

    def compact_step(self, max_digests: int = 0, past_only: bool = False) -> list[str]:
        """Write the day and week digests that are missing or stale (`past_only`: not
        today's); return their ids. Runs after summaries, never beside them: one model
        job at a time."""
        if not (self.cfg.compaction.enabled and self.cfg.pipeline.summarize):
            return []
        if not self.budget.ready():
            return []
        with self._summary_lock, self.budget.spend():
            done = self.engine.compact(max_digests, past_only=past_only)
            written = list(done.get("written", []))
            self._report_digest_model(done.get("model_errors") or [], written)
            if not done.get("more") and self.cfg.compaction.retain_events_days > 0:
                # every day is digested now: raw events past retention may go
                self.engine.prune_events(self.cfg.compaction.retain_events_days)
        if written:
            log.info("compaction wrote %d digests: %s", len(written), ", ".join(written))
        return written

    def drain(self, progress: ProgressFn | None = None) -> StepReport:
        """Index and summarize everything in the journal; stop early on repeated failure.
        `progress(stage, done, total)` is told after each batch."""
        total = StepReport()
        show = progress or (lambda stage, done, of: None)
        counts = self.journal.counts()
        to_index = counts["new"]
        to_summarize = counts["new"] + counts["indexed"] if self.cfg.pipeline.summarize else 0
        while n := self.index_step():
            total.indexed += n
            show("index", total.indexed, max(to_index, total.indexed))
        while to_summarize:
            r = self.summary_step(flush=True)
            total.summarized_chunks += r.summarized_chunks
            total.summarized_events += r.summarized_events
            total.errors += r.errors
            show("summarize", total.summarized_events,
                 max(to_summarize, total.summarized_events))
            if r.errors or not r.summarized_chunks:
                break
        return total
