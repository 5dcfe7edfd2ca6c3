"""The read path on a real LanceDB store with real embeddings: time expressions filter,
filters hold, a memory and its events take one slot, context packs keep their budget,
digests are found, and forget removes everything everywhere."""

from __future__ import annotations

import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from collectors.base import Batch, Event
from daemon.recall import reads as recall
from daemon.config import load_config
from daemon.recall.context import estimate_tokens
from daemon.store.engine import Engine
from daemon.intake.journal import Journal
from daemon.service import MemoryService
from daemon.recall.search import Filters
from daemon.store.lance import Store, event_doc, event_row
from models.assets import embedder_path
from models.sentence_tf import SentenceTransformerBackend

# Thursday 2026-03-12 15:00 UTC; the fixture week runs Monday 9th .. Thursday 12th.
NOW = datetime(2026, 3, 12, 15, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def embedder(models_dir: Path) -> SentenceTransformerBackend:
    return SentenceTransformerBackend(embedder_path("all-minilm-l6-v2"), name="all-minilm-l6-v2",
                                      dimensions=384, idle_seconds=0)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def ev(when: datetime, source: str, subject: str, text: str = "", title: str = "",
       kind: str | None = None) -> Event:
    kinds = {"files": "file.modified", "shell": "shell.command", "browser": "browser.visit"}
    return Event.new(ts=when, source=source, kind=kind or kinds[source], subject=subject,
                     title=title, text=text)


EVENTS = [
    ev(at(9, 10), "shell", "pytest tests/test_ranker.py -k tie_break", "exit 1"),
    ev(at(10, 11), "shell", "git push origin fix/decay-twice", ""),
    ev(at(10, 11, 5), "browser", "https://github.com/acme/leadscore/pull/231",
       title="Fix decay applied twice #231"),
    ev(at(11, 9), "files", "/home/u/src/leadscore/notes/decay.md",
       "Decided: relevance decay 0.82 per week after the backtest.", title="decay.md"),
    ev(at(11, 9, 30), "shell", "ssh -o ServerAliveInterval=30 backup-host", ""),
    ev(at(12, 8), "files", "/home/u/src/recruit/flows/review.yaml",
       "handoff_threshold: 0.74  # pass an applicant to a person above this",
       title="review.yaml"),
    ev(at(12, 9), "browser", "https://docs.lancedb.com/hybrid", title="Hybrid Search - LanceDB"),
]


def memory(store: Store, embedder: SentenceTransformerBackend, mid: str, level: str,
           start: datetime, end: datetime, title: str, text: str, source: str = "shell",
           event_ids: list[str] | None = None, sources: list[str] | None = None,
           project: str = "", **lists: list[str]) -> dict[str, Any]:
    """A `memories` row with every column of the store's schema filled."""
    row: dict[str, Any] = {
        "id": mid, "ts": start, "ts_end": end, "level": level, "source": source,
        "title": title, "text": text, "event_ids": event_ids or [], "model": "test",
        "created": NOW, "doc": f"{title}\n{text}", "vector": embedder.embed([f"{title}\n{text}"])[0],
    }
    names = store.memories.schema.names
    optional = {"project": project, "sources": sources or [], **lists}
    for name in names:
        if name not in row:
            row[name] = optional.get(name, [] if name not in ("project",) else "")
    store.upsert_memories([row])
    return row


@pytest.fixture
def store(tmp_path: Path, embedder: SentenceTransformerBackend) -> Store:
    s = Store(tmp_path / "store", 384, "all-minilm-l6-v2")
    vecs = embedder.embed([event_doc(e) for e in EVENTS])
    s.upsert_events([event_row(e, v) for e, v in zip(EVENTS, vecs, strict=True)])
    return s


def search(store: Store, embedder: SentenceTransformerBackend, q: str, k: int = 10,
           **f: Any) -> list[Any]:
    return recall.search(store, embedder.embed, q, k, Filters(**f), now=NOW, tz=UTC)


def test_time_expressions_become_filters(store: Store, embedder: SentenceTransformerBackend
                                         ) -> None:
    yesterday = search(store, embedder, "what did I work on yesterday")
    assert yesterday and {h.ts.date() for h in yesterday} == {date(2026, 3, 11)}
    tuesday = search(store, embedder, "which branch did I push last Tuesday")
    assert {h.ts.date() for h in tuesday} == {date(2026, 3, 10)}
    assert "fix/decay-twice" in tuesday[0].title
    week = search(store, embedder, "commands I ran this week", source="shell")
    assert len(week) == 3  # Monday's, Tuesday's and Wednesday's
    # an explicit range wins over words in the query
    explicit = search(store, embedder, "yesterday's notes", since=at(12, 0))
    assert {h.ts.date() for h in explicit} == {date(2026, 3, 12)}


def test_filters_by_source_kind_project_and_level(
        store: Store, embedder: SentenceTransformerBackend) -> None:
    assert {h.source for h in search(store, embedder, "decay", source="browser")} == {"browser"}
    assert {h.kind for h in search(store, embedder, "decay", kind="file.modified")} == {
        "file.modified"}
    memory(store, embedder, "m-lead", "chunk", at(11, 9), at(11, 9, 30), "leadscore decay notes",
           "Chose decay 0.82.", source="files", project="leadscore")
    memory(store, embedder, "m-rec", "chunk", at(12, 8), at(12, 8, 10), "recruit thresholds",
           "Threshold 0.74.", source="files", project="recruit")
    hits = search(store, embedder, "threshold decay", project="leadscore")
    # memories by their project; events (which carry none) by their path or URL
    assert {h.id for h in hits} == {"m-lead", EVENTS[3].id, EVENTS[2].id}
    only_chunks = search(store, embedder, "threshold decay", level="chunk")
    assert {h.id for h in only_chunks} == {"m-lead", "m-rec"}


def test_a_memory_and_its_own_events_take_one_slot(
        store: Store, embedder: SentenceTransformerBackend) -> None:
    pr, push = EVENTS[2], EVENTS[1]
    memory(store, embedder, "m-pr", "chunk", push.ts, pr.ts, "leadscore decay fix",
           "Pushed the branch fixing the decay and opened its pull request.",
           event_ids=[push.id, pr.id])
    group = {"m-pr", push.id, pr.id}
    for q in ("decay fix pull request branch", "git push origin fix/decay-twice"):
        hits = search(store, embedder, q, k=5)
        ids = [h.id for h in hits]
        standing = [h for h in hits if h.id in group]
        assert len(standing) == 1, ids  # one slot for the memory and its events
        head = standing[0]
        assert {head.id, *(c.id for c in head.covers)} == group
        # what the folded members said is still in the hit, with their identifiers
        assert "fix/decay-twice" in head.title + head.text and "#231" in head.title + head.text
        assert len(set(ids)) == len(ids)
    assert head.id == push.id  # an exact match of the event outranks the summary


def test_context_pack_keeps_its_budget_and_cites_time_and_sources(
        store: Store, embedder: SentenceTransformerBackend) -> None:
    memory(store, embedder, "d-11", "day", at(11, 0), at(12, 0), "Wednesday 2026-03-11",
           "Settled the relevance decay at 0.82 and kept the SSH tunnel alive.",
           source="digest", sources=[])
    for budget in (120, 400, 4000):
        pack = recall.context(store, embedder.embed, "what did I decide yesterday", budget,
                              now=NOW, tz=UTC)
        assert pack["tokens"] <= budget
        assert estimate_tokens(pack["markdown"]) <= budget
        assert pack["items"], "even a small budget holds one item"
        assert "UTC" in pack["markdown"] and "sources:" in pack["markdown"]
    assert pack["items"][0]["id"] == "d-11"  # the period's digest leads
    assert pack["since"] == "2026-03-11T00:00:00Z"
    assert "0.82" in pack["markdown"]
    small = recall.context(store, embedder.embed, "decay", 120, now=NOW, tz=UTC)
    assert len(small["items"]) < len(
        recall.context(store, embedder.embed, "decay", 4000, now=NOW, tz=UTC)["items"])
    with pytest.raises(ValueError, match="too small"):
        recall.context(store, embedder.embed, "decay", 5, now=NOW, tz=UTC)


def test_digest_of_a_day_and_of_a_week(store: Store, embedder: SentenceTransformerBackend
                                       ) -> None:
    c = memory(store, embedder, "c-11", "chunk", at(11, 9), at(11, 9, 30), "notes", "Decay.")
    memory(store, embedder, "d-11", "day", at(11, 0), at(12, 0), "Wednesday", "A day.",
           sources=["c-11"])
    memory(store, embedder, "w-10", "week", at(9, 0), at(16, 0), "Week 11", "A week.",
           sources=["d-11"])
    day = recall.digest(store, "day", date(2026, 3, 11), UTC)
    assert day["digest"]["id"] == "d-11" and day["digest"]["sources"] == ["c-11"]
    assert [m["id"] for m in day["children"]] == [c["id"]]
    week = recall.digest(store, "week", date(2026, 3, 12), UTC)
    assert week["digest"]["id"] == "w-10" and [m["id"] for m in week["children"]] == ["d-11"]
    empty = recall.digest(store, "day", date(2026, 3, 1), UTC)
    assert empty["digest"] is None and empty["children"] == []


def _files_containing(folder: Path, needle: bytes) -> list[str]:
    out = subprocess.run(["grep", "-rl", "--binary-files=text", needle.decode(), str(folder)],
                         capture_output=True, text=True)
    return [p for p in out.stdout.split("\n") if p]


def test_forget_removes_from_store_index_journal_and_disk(
        make_config, tmp_path: Path) -> None:
    cfg = load_config(make_config(pipeline={"summarize": False}))
    journal = Journal(cfg.data_path / "journal.sqlite3")
    secret = ev(NOW - timedelta(hours=2), "shell", "curl https://zqxsecretbank.example/api",
                "balance 4711")
    other = ev(NOW - timedelta(hours=1), "shell", "pytest -q tests/test_ranker.py", "exit 0")
    journal.append(Batch("shell", [secret, other]))
    engine = Engine(cfg)
    service = MemoryService(cfg, journal, engine)
    engine.index(journal.by_ids([secret.id, other.id]))
    vec = engine.models.embed(["summary"])[0]
    memory(engine.store, engine.models.embedder, "m-both", "chunk", secret.ts, other.ts,
           "shell session", "Checked the zqxsecretbank balance and ran tests.",
           event_ids=[secret.id, other.id])
    memory(engine.store, engine.models.embedder, "d-day", "day", secret.ts, other.ts,
           "the day", "A day of shell work.", sources=["m-both"])
    assert vec and engine.store.counts() == {"events": 2, "memories": 2}

    preview = service.forget(query="ZQXSECRETBANK", dry_run=True)
    assert (preview["events"], preview["memories"], preview["journal"]) == (1, 2, 1)
    assert engine.store.counts() == {"events": 2, "memories": 2}  # a preview deletes nothing

    gone = service.forget(query="ZQXSECRETBANK")
    assert (gone["events"], gone["memories"], gone["journal"]) == (1, 2, 1)
    assert engine.store.counts() == {"events": 1, "memories": 0}  # the summary and digest too
    assert engine.store.text_search("events", "zqxsecretbank", 5) == []
    assert engine.store.text_search("memories", "zqxsecretbank", 5) == []
    found = engine.search("zqxsecretbank balance", 5)
    assert secret.id not in {h.id for h in found} and other.id in {h.id for h in found}
    assert journal.known([secret.id, other.id]) == {other.id}
    # gone from the bytes on disk too: no older table version, no journal page keeps it
    assert _files_containing(cfg.data_path, b"zqxsecretbank") == []

    # re-index everything the journal holds into a fresh store: nothing comes back
    engine.close()
    engine.store.optimize()
    import shutil

    shutil.rmtree(cfg.data_path / "store")
    fresh = Engine(cfg)
    import sqlite3

    ids = [r[0] for r in sqlite3.connect(journal.path).execute("SELECT id FROM events")]
    fresh.index(journal.by_ids(ids))
    assert fresh.store.counts()["events"] == 1
    assert fresh.store.text_search("events", "zqxsecretbank", 5) == []
    fresh.close()
    journal.close()


def test_forget_by_time_and_source_and_refuses_an_empty_scope(
        store: Store, embedder: SentenceTransformerBackend) -> None:
    with pytest.raises(ValueError, match="say what to forget"):
        recall.forget(store)
    out = recall.forget(store, since=at(11, 0), until=at(12, 0), source="shell")
    assert out["events"] == 1  # only Wednesday's ssh command
    left = {h.id for h in recall.recent(store, 50)}
    assert EVENTS[4].id not in left and EVENTS[3].id in left and len(left) == 6
    tl = recall.timeline(store, at(10, 0), at(12, 0))
    assert [h.id for h in tl] == [EVENTS[1].id, EVENTS[2].id, EVENTS[3].id]
    assert [h.id for h in recall.recent(store, 2, "browser")] == [EVENTS[6].id, EVENTS[2].id]


def test_what_was_forgotten_never_comes_back(make_config) -> None:
    # Two ways forgotten memory used to return: a collector reading the same history
    # again (same stable event ids), and a sync peer that still holds the memories.
    cfg = load_config(make_config(pipeline={"summarize": False}))
    journal = Journal(cfg.data_path / "journal.sqlite3")
    secret = ev(NOW - timedelta(hours=2), "shell", "ssh ops@vault-7.example", "rotated")
    other = ev(NOW - timedelta(hours=1), "shell", "make release", "ok")
    journal.append(Batch("shell", [secret, other]))
    engine = Engine(cfg)
    service = MemoryService(cfg, journal, engine)
    engine.index(journal.by_ids([secret.id, other.id]))
    memory(engine.store, engine.models.embedder, "m-vault", "chunk", secret.ts, secret.ts,
           "ssh", "Logged in to vault-7 and rotated keys.", event_ids=[secret.id])
    memory(engine.store, engine.models.embedder, "d-day", "day", secret.ts, other.ts,
           "the day", "Ops work.", sources=["m-vault"])
    memory(engine.store, engine.models.embedder, "m-release", "chunk", other.ts, other.ts,
           "release", "Ran make release.", event_ids=[other.id])
    peer_snapshot = [s["data"] for s in engine.export_memories()["segments"]]

    assert service.forget(query="vault-7")["memories"] == 2
    assert journal.forgotten_count() == 3  # one event, two memories: ids only

    assert journal.append(Batch("shell", [secret, other])) == 0  # history read again
    assert journal.known([secret.id]) == set()
    merged = engine.import_memories(peer_snapshot)  # the peer pushes what it still has
    ids = set(engine.store.ids("memories", "id IS NOT NULL"))
    assert ids == {"m-release"} and merged["inserted"] == 0
    assert engine.store.text_search("memories", "vault", 5) == []
    fresh = ev(NOW, "shell", "ssh ops@vault-7.example", "new login")  # new activity is kept
    assert journal.append(Batch("shell", [fresh])) == 1
    engine.close()
    journal.close()
