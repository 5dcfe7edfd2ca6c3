"""Summaries on a budget, newest first: today's chunks before last week's before older
history; the daemon's model work stays inside `[compaction] max_cpu_percent`; each
stage's backlog, rate and ETA are reported."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from collectors.base import Batch, Event
from daemon.config import load_config
from daemon.intake.journal import Journal
from daemon.pipeline.budget import CpuBudget
from daemon.pipeline.citizen import _tree_cpu
from daemon.pipeline.steps import EXTRACTED_PER_CALL, Pipeline
from daemon.store.engine import Engine


class RecordingEngine(Engine):
    """The real engine (real embedder, real 0.5B summarizer, real LanceDB), recording
    which chunk it was asked to summarize when."""

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.order: list[datetime] = []

    def summarize_many(self, chunks: list[list[Event]]) -> list[dict[str, Any]]:
        self.order.extend(max(e.ts for e in events) for events in chunks)
        return super().summarize_many(chunks)


def _session(day: datetime, what: str) -> list[Event]:
    return [Event.new(source="shell", kind="shell.command", subject=f"make {what}-{i}",
                      ts=day + timedelta(seconds=30 * i)) for i in range(3)]


class RecordingFake:
    """A fake at the engine seam: records the order, summarizes nothing."""

    def __init__(self) -> None:
        self.order: list[datetime] = []

    def index(self, events: list[Event]) -> int:
        return len(events)

    def summarize_many(self, chunks: list[list[Event]]) -> list[dict[str, Any]]:
        self.order.extend(max(e.ts for e in events) for events in chunks)
        return [{} for _ in chunks]

    def close(self) -> None:
        pass


@pytest.mark.parametrize("real", [
    False, pytest.param(True, marks=pytest.mark.slow)])  # real: the real engine (embedder, LanceDB)
def test_newest_chunks_are_summarized_first(make_config, real: bool) -> None:
    cfg = load_config(make_config(pipeline={"chunk_close_after_seconds": 1}))
    journal = Journal(cfg.data_path / "journal.sqlite3")
    engine: Any = RecordingEngine(cfg) if real else RecordingFake()
    pipeline = Pipeline(cfg, journal, engine)
    now = datetime.now(UTC)
    days = [now - timedelta(days=40), now - timedelta(days=3), now - timedelta(minutes=30)]
    for day, what in zip(days, ("old", "week", "today"), strict=True):  # oldest journaled first
        journal.append(Batch("shell", _session(day, what)))
    assert pipeline.index_step() == 9
    try:  # the last week's two in one batch, then older history's
        assert pipeline.summary_step(max_chunks=1).summarized_chunks == 3
    finally:
        engine.close()
    assert [d.date() for d in sorted(days, reverse=True)] == [t.date() for t in engine.order]
    stages = pipeline.status()["stages"]
    assert stages["summarize"]["backlog"] == 0 and stages["summarize"]["rate_per_s"] > 0
    assert stages["index"] == {"backlog": 0, "rate_per_s": stages["index"]["rate_per_s"],
                               "eta_seconds": 0}
    journal.close()


class IndexRecorder(RecordingFake):
    """RecordingFake that also records each index batch and each summarized chunk's size."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[set[datetime]] = []
        self.sizes: list[int] = []

    def index(self, events: list[Event]) -> int:
        self.batches.append({e.ts for e in events})
        return len(events)

    def summarize_many(self, chunks: list[list[Event]]) -> list[dict[str, Any]]:
        self.sizes.extend(len(events) for events in chunks)
        return super().summarize_many(chunks)


def test_the_newest_activity_is_indexed_first_and_a_session_is_summarized_whole(
        make_config) -> None:
    """A backfill journals history oldest first; the index takes the newest first, and a
    session only partly indexed waits until the rest of it is."""
    cfg = load_config(make_config(pipeline={"chunk_close_after_seconds": 1,
                                            "batch_events": 4}))
    journal = Journal(cfg.data_path / "journal.sqlite3")
    engine = IndexRecorder()
    pipeline = Pipeline(cfg, journal, engine)  # type: ignore[arg-type]
    now = datetime.now(UTC)
    sessions = {what: _session(now - ago, what) for what, ago in (
        ("old", timedelta(days=40)), ("week", timedelta(days=3)),
        ("today", timedelta(minutes=30)))}
    for events in sessions.values():  # oldest journaled first
        journal.append(Batch("shell", events))

    assert pipeline.index_step() == 4
    assert engine.batches[0] == {e.ts for e in [*sessions["today"], sessions["week"][-1]]}
    pipeline.summary_step(max_chunks=4)
    assert engine.order == [sessions["today"][-1].ts]  # the week's session is not whole yet

    while pipeline.index_step():
        pass
    pipeline.summary_step(max_chunks=4)
    assert engine.order == [s[-1].ts for s in (sessions["today"], sessions["week"],
                                               sessions["old"])]
    assert engine.sizes == [3, 3, 3]  # each session in one chunk
    journal.close()


class BurningEngine:
    """A fake at the engine seam (a real summary costs minutes on this box): each summary
    burns `cpu` seconds of this process's CPU, as the worker's model would."""

    def __init__(self, cpu: float) -> None:
        self.cpu = cpu
        self.calls = 0

    def index(self, events: list[Event]) -> int:
        return len(events)

    def summarize(self, events: list[Event]) -> dict[str, Any]:
        self.calls += 1
        start = time.process_time()
        while time.process_time() - start < self.cpu:
            pass
        return {"seconds": self.cpu}

    def summarize_many(self, chunks: list[list[Event]]) -> list[dict[str, Any]]:
        return [self.summarize(events) for events in chunks]

    def compact(self, max_digests: int = 0, past_only: bool = False) -> dict[str, Any]:
        return {"written": []}

    def prune_events(self, older_than_days: int) -> int:
        return 0


def _thirty_chunks_at_five_percent(make_config: Any, engine: Any, mode: str = "always",
                                   age: timedelta = timedelta(hours=2)
                                   ) -> tuple[Pipeline, Journal]:
    """60 indexed commands of two hours ago (30 closed chunks of 2) before a pipeline on
    `engine` whose budget is 5 % of one core, whatever the box has; `mode`: which chunks
    the model reads ([compaction] chunk_model)."""
    cfg = load_config(make_config(compaction={"max_cpu_percent": 5, "chunk_model": mode},
                                  pipeline={"chunk_max_events": 2}))
    journal = Journal(cfg.data_path / "journal.sqlite3")
    pipeline = Pipeline(cfg, journal, engine)
    pipeline.budget = CpuBudget(5, cores=1)
    old = datetime.now(UTC) - age
    journal.append(Batch("shell", [
        Event.new(source="shell", kind="shell.command", subject=f"make {i}",
                  ts=old + timedelta(seconds=i)) for i in range(60)]))
    pipeline.index_step()
    return pipeline, journal


def test_summaries_stay_inside_the_cpu_budget(make_config) -> None:
    engine = BurningEngine(cpu=0.3)
    pipeline, journal = _thirty_chunks_at_five_percent(make_config, engine)
    t0, c0 = time.monotonic(), _tree_cpu()
    while time.monotonic() - t0 < 8.0:  # the scheduler's ticks, much faster than its 5 s
        pipeline.summary_step()
        time.sleep(0.05)
    share = (_tree_cpu() - c0) / (time.monotonic() - t0) * 100
    # 0.3 CPU s a summary at 5 % of a core: one at once, the next ~6 s later, no more
    assert 2 <= engine.calls <= 3, engine.calls
    # the share counts this whole test process (earlier tests' idle threads too): loose
    assert share <= 25, f"{share:.0f} % of a core used with a 5 % budget"
    # without the budget (`ingest --once`), the same work runs back to back
    pipeline.budget = CpuBudget(0)
    before = engine.calls
    pipeline.summary_step(flush=True)
    assert engine.calls - before == 4  # max_chunks, none held back
    journal.close()


class ExtractingEngine(BurningEngine):
    """Chunk memories written without a model (`chunk_model = "never"`): the tree's CPU
    meanwhile is other work (here burnt beside each call, as indexing would)."""

    def summarize(self, events: list[Event]) -> dict[str, Any]:
        return {**super().summarize(events), "model_asked": False}


def test_chunks_the_model_does_not_read_are_not_held_by_the_budget(make_config) -> None:
    engine = ExtractingEngine(cpu=0.05)
    pipeline, journal = _thirty_chunks_at_five_percent(make_config, engine)
    first = pipeline.summary_step()
    # 30 chunks of 2: all in one step (more than max_chunks = 4 model calls' worth), and
    # the budget holds nothing back for work that asked no model
    assert first.summarized_chunks == 30 and engine.calls == 30
    assert pipeline.budget.ready()
    journal.close()


def test_a_digests_hold_does_not_stop_chunks_no_model_reads(make_config) -> None:
    engine = ExtractingEngine(cpu=0.0)
    pipeline, journal = _thirty_chunks_at_five_percent(make_config, engine, mode="never")
    pipeline.budget.hold_until = time.monotonic() + 3600  # a digest just spent a lot
    assert not pipeline.budget.ready()
    assert pipeline.summary_step().summarized_chunks == 30  # extracted ones: not held
    digests: list[int] = []
    engine.compact = lambda *a, **k: digests.append(1) or {"written": []}  # type: ignore
    pipeline.compact_step()
    assert digests == []  # the model's work still waits
    journal.close()


def test_older_history_stays_inside_the_budget_even_without_the_model(make_config) -> None:
    engine = ExtractingEngine(cpu=0.3)  # the tree's CPU during each memory, as indexing's
    pipeline, journal = _thirty_chunks_at_five_percent(make_config, engine, mode="never",
                                                       age=timedelta(days=10))
    first = pipeline.summary_step(max_chunks=1)  # a batch of EXTRACTED_PER_CALL chunks
    # history older than a week is charged: 16 x 0.3 CPU s at 5 % of a core holds the next
    # ~100 s, so the rest waits
    assert first.summarized_chunks == EXTRACTED_PER_CALL == engine.calls
    assert not pipeline.budget.ready()
    assert pipeline.summary_step(max_chunks=1).summarized_chunks == 0
    journal.close()


def test_stale_digests_come_newest_first() -> None:
    from daemon.pipeline.compaction import stale_periods

    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    chunks = [{"id": f"c{i}", "ts": now - timedelta(days=i), "created": now}
              for i in range(5)]
    days = list(stale_periods("day", chunks, []))
    assert days == ["2026-11-30", "2026-11-29", "2026-11-28", "2026-11-27", "2026-11-26"]


class DigestFailingEngine(ExtractingEngine):
    """A summarizer that no chunk asks (the default) and that fails on digests."""

    def __init__(self) -> None:
        super().__init__(cpu=0.0)
        self.errors = ["llama.cpp could not load broken.gguf"]

    def compact(self, max_digests: int = 0, past_only: bool = False) -> dict[str, Any]:
        return {"written": ["day-2026-12-03~ada@desk"], "model_errors": self.errors}


def test_a_summarizer_failing_only_on_digests_is_reported_and_cleared(make_config) -> None:
    cfg = load_config(make_config())
    journal = Journal(cfg.data_path / "journal.sqlite3")
    engine = DigestFailingEngine()
    pipeline = Pipeline(cfg, journal, engine)  # type: ignore[arg-type]
    pipeline.budget = CpuBudget(0)  # what is pinned here is the report, not the pace
    journal.append(Batch("shell", [Event.new(
        source="shell", kind="shell.command", subject="make",
        ts=datetime.now(UTC) - timedelta(hours=2))]))
    pipeline.index_step()
    pipeline.compact_step()
    pipeline.summary_step()  # an extracted chunk memory says nothing of the model
    [problem] = [p for p in pipeline.conditions.active() if p.code == "summarizer_failed"]
    assert "broken.gguf" in problem.message and "summarized" in problem.message
    engine.errors = []
    pipeline.compact_step()  # the model wrote a digest again
    assert not [p for p in pipeline.conditions.active() if p.code == "summarizer_failed"]
    journal.close()


def test_past_days_are_digested_as_their_summaries_land_and_today_waits(
        make_config, monkeypatch) -> None:
    from daemon.pipeline import steps
    from models.errors import ModelError

    cfg = load_config(make_config(pipeline={"chunk_close_after_seconds": 1},
                                  search={"timezone": "UTC"}))
    journal = Journal(cfg.data_path / "journal.sqlite3")
    engine = Engine(cfg)
    asked: list[str] = []

    def no_model(task: str, messages: list[dict[str, str]], **_: Any) -> None:
        asked.append(messages[-1]["content"].split(":")[0])
        raise ModelError("no model answers in this test")  # the digest is the extracted one

    engine.models.complete = no_model  # type: ignore[method-assign,assignment]
    pipeline = Pipeline(cfg, journal, engine)
    now = datetime.now(UTC)
    past = now - timedelta(days=3)
    journal.append(Batch("shell", _session(past, "backfill") + _session(
        now - timedelta(seconds=100), "today")))
    pipeline.index_step()
    try:
        monkeypatch.setattr(steps, "DIGESTS_FOLLOW_SECONDS", 3600.0)
        assert pipeline.summarize_then_digest_past().summarized_chunks == 2
        assert asked == []  # chunks written, but not yet time for their digests
        monkeypatch.setattr(steps, "DIGESTS_FOLLOW_SECONDS", 0.0)
        pipeline.summarize_then_digest_past()
        assert asked == [f"Notes about the day {past.date()}"]  # not today's
        days = {r["id"].split("~")[0] for r in engine.store.memory_rows("level = 'day'")}
        assert days == {f"day-{past.date()}"}
        pipeline.summarize_then_digest_past()  # nothing new summarized: nothing asked
        assert len(asked) == 1
    finally:
        engine.close()
        journal.close()


def _history_with_digests_due_at_once(make_config: Any, engine: Any, monkeypatch: Any
                                      ) -> tuple[Pipeline, Journal, list[tuple[int, bool]]]:
    """Thirty chunks of ten days ago no model reads, digests due at every follow, and the
    engine's compactions recorded (max_digests, past_only) instead of run."""
    from daemon.pipeline import steps

    pipeline, journal = _thirty_chunks_at_five_percent(make_config, engine, mode="never",
                                                       age=timedelta(days=10))
    compactions: list[tuple[int, bool]] = []
    engine.compact = lambda max_digests=0, past_only=False: (
        compactions.append((max_digests, past_only)) or {"written": []})
    monkeypatch.setattr(steps, "DIGESTS_FOLLOW_SECONDS", 0.0)
    return pipeline, journal, compactions


def test_due_digests_go_before_older_history_and_are_not_starved(
        make_config, monkeypatch) -> None:
    """Older history's chunk memories and the digests both spend the CPU budget: while the
    last days' digests are due, older history waits for them, so a backfill's digests are
    not put off for as long as 90 days of history take to summarize."""
    from daemon.pipeline import steps

    engine = ExtractingEngine(cpu=0.0)
    pipeline, journal, compactions = _history_with_digests_due_at_once(
        make_config, engine, monkeypatch)
    pipeline._chunks_since_digests = True  # chunks were written since the last digests
    pipeline.budget.hold_until = time.monotonic() + 3600  # ...and spent the budget
    assert pipeline.summarize_then_digest_past().summarized_chunks == 0
    assert compactions == []  # due, waiting for the budget; older history waits too
    pipeline.budget.hold_until = 0.0
    assert pipeline.summarize_then_digest_past().summarized_chunks == 0
    assert compactions == [(steps.DIGESTS_PER_FOLLOW, True)]  # the digests went first
    pipeline.budget.hold_until = 0.0  # whatever the compaction's charge held (pinned above)
    assert pipeline.summarize_then_digest_past().summarized_chunks == 30  # then history
    journal.close()


def _three_indexed_days(make_config) -> tuple[Journal, Engine, Pipeline, list[datetime]]:
    """A real engine and LanceDB with a session on each of three past days, indexed, not
    summarized; no model answers (the digests' prose is the extracted one) and no CPU
    budget holds the steps back (its hold between runs is pinned above)."""
    from models.errors import ModelError

    cfg = load_config(make_config(pipeline={"chunk_close_after_seconds": 1},
                                  search={"timezone": "UTC"}))
    journal = Journal(cfg.data_path / "journal.sqlite3")
    engine = Engine(cfg)

    def no_model(*_: Any, **__: Any) -> None:
        raise ModelError("no model answers in this test")

    engine.models.complete = no_model  # type: ignore[method-assign,assignment]
    pipeline = Pipeline(cfg, journal, engine)
    pipeline.budget = CpuBudget(0)
    now = datetime.now(UTC)
    days = [now - timedelta(days=d) for d in (2, 3, 4)]
    journal.append(Batch("shell", [e for i, d in enumerate(days)
                                   for e in _session(d, f"day{i}")]))
    pipeline.index_step()
    return journal, engine, pipeline, days


def test_a_scheduled_compaction_writes_a_bounded_number_of_digests(
        make_config, monkeypatch) -> None:
    """A backfill leaves many days stale at once: each run of the compaction job writes
    at most DIGESTS_PER_FOLLOW of them, newest first, and the next runs the rest (real
    engine and LanceDB; the digests' prose is the extracted one: no model answers)."""
    from daemon.pipeline import steps

    journal, engine, pipeline, days = _three_indexed_days(make_config)
    monkeypatch.setattr(steps, "DIGESTS_PER_FOLLOW", 2)
    try:
        assert pipeline.summary_step().summarized_chunks == 3
        runs = []
        while len(runs) < 5 and (written := pipeline.scheduled_compaction()):
            runs.append(written)
        first = [w.split("~")[0] for w in runs[0] if w.startswith("day-")]
        assert first == [f"day-{d.date()}" for d in days[:2]]  # bounded, newest first
        assert len(runs) >= 2  # the rest at the next run
        stored = {r["id"].split("~")[0] for r in engine.store.memory_rows("level = 'day'")}
        assert stored == {f"day-{d.date()}" for d in days}
    finally:
        engine.close()
        journal.close()


def test_compaction_reads_whole_rows_only_for_the_days_it_digests(make_config) -> None:
    """Finding the stale days needs three columns of each chunk memory; their texts and
    lists are read only for the day digested now (a 90-day backfill held every memory
    whole through a compaction's model calls). Real engine and LanceDB."""
    journal, engine, pipeline, days = _three_indexed_days(make_config)
    reads: list[tuple[str, list[str] | None]] = []
    real = engine.store.memory_rows

    def recorded(where: str, columns: list[str] | None = None) -> list[dict[str, Any]]:
        reads.append((where, columns))
        return real(where, columns)

    try:
        assert pipeline.summary_step().summarized_chunks == 3
        chunks = {r["id"]: r["ts"].date() for r in real("level = 'chunk'", ["id", "ts"])}
        engine.store.memory_rows = recorded  # type: ignore[method-assign]
        written = [w for w in engine.compact(max_digests=1)["written"]
                   if w.startswith("day-")]  # (and its week: a week asks no model)
        assert [w.split("~")[0] for w in written] == [f"day-{days[0].date()}"]
        whole = [where for where, cols in reads if cols and "text" in cols]
        assert not any("level = 'chunk'" in where for where in whole)
        read_ids = {c for c in chunks if any(c in where for where in whole)}
        assert read_ids == {c for c, day in chunks.items() if day == days[0].date()}
        day = real(f"id = '{written[0]}'", ["sources", "text"])[0]
        assert set(day["sources"]) == read_ids and "make day0-0" in day["text"]
    finally:
        engine.close()
        journal.close()


def test_digests_and_older_history_wait_while_a_backfill_is_indexed(
        make_config, monkeypatch) -> None:
    """Everything searchable before a model writes a digest: while more than a batch of
    events waits to be indexed, the digests' model calls and older history's chunk
    memories (the same cores) wait; the last days' chunk memories go on."""
    from daemon.pipeline import steps

    class Recording(ExtractingEngine):
        def __init__(self) -> None:
            super().__init__(cpu=0.0)
            self.ends: list[datetime] = []

        def summarize_many(self, chunks: list[list[Event]]) -> list[dict[str, Any]]:
            self.ends += [max(e.ts for e in events) for events in chunks]
            return super().summarize_many(chunks)

    engine = Recording()
    pipeline, journal, compactions = _history_with_digests_due_at_once(
        make_config, engine, monkeypatch)
    now = datetime.now(UTC)
    backlog = 2 * pipeline.cfg.pipeline.batch_events + 2  # yesterday's, journaled
    journal.append(Batch("shell", [
        Event.new(source="shell", kind="shell.command", subject=f"make backfill-{i}",
                  ts=now - timedelta(days=1, seconds=i)) for i in range(backlog)]))
    pipeline.index_step()  # one batch of it: more than a batch still waits
    assert pipeline.indexing_behind()
    pipeline._chunks_since_digests = True  # digests are due
    report = pipeline.summarize_then_digest_past()
    assert report.summarized_chunks > 0 and min(engine.ends) >= now - timedelta(days=7)
    assert compactions == [] and pipeline.scheduled_compaction() == [] and compactions == []
    while pipeline.index_step():  # the backfill is searchable
        pass
    assert not pipeline.indexing_behind()
    pipeline.summarize_then_digest_past()
    assert compactions == [(steps.DIGESTS_PER_FOLLOW, True)]
    journal.close()
