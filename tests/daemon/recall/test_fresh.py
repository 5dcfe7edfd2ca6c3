"""A file just saved, a command just run: searchable the moment it is journaled, before
the worker has embedded and stored it (daemon/recall/fresh.py). Real journal, real
LanceDB, real embedder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from collectors.base import Batch, Event
from daemon.config import load_config
from daemon.intake.journal import INDEXED, Journal
from daemon.owners import Owners, identity
from daemon.recall.fresh import query_words
from daemon.service import MemoryService
from daemon.store.engine import Engine

NOW = datetime.now(UTC)


def saved(text: str, minutes_ago: int = 1) -> Event:
    return Event.new(ts=NOW - timedelta(minutes=minutes_ago), source="files",
                     kind="file.modified", subject="/home/u/notes/ports.md", title="ports.md",
                     text=text)


def a_note_not_yet_indexed(make_config) -> tuple[Any, Journal, Engine, MemoryService, Event]:
    """A store holding an older command, and a note only journaled: (cfg, journal, engine,
    service, note)."""
    cfg = load_config(make_config(pipeline={"summarize": False}))
    journal = Journal(cfg.data_path / "journal.sqlite3")
    engine = Engine(cfg)
    service = MemoryService(cfg, journal, engine)
    older = Event.new(ts=NOW - timedelta(hours=3), source="shell", kind="shell.command",
                      subject="curl localhost:8080/health", title="", text="")
    journal.append(Batch("shell", [older]))
    engine.index(journal.by_ids([older.id]))
    journal.advance([older.id], INDEXED)
    note = saved("The qwen endpoint zephyrport listens on 8081 now")
    journal.append(Batch("files", [note]))
    return cfg, journal, engine, service, note


def test_a_journaled_event_is_found_before_it_is_indexed_and_once_after(make_config) -> None:
    cfg, journal, engine, service, note = a_note_not_yet_indexed(make_config)

    hits = service.search("which port does zephyrport listen on", k=5)
    assert hits[0].id == note.id and hits[0].table == "events"
    assert (hits[0].device, hits[0].user) == identity(cfg)
    assert [h.id for h in hits].count(note.id) == 1
    # every word must be there; the filters and scopes hold
    assert note.id not in {h.id for h in service.search("zephyrport kubernetes", k=5)}
    assert note.id not in {h.id for h in service.search("zephyrport", k=5, source="shell")}
    assert note.id not in {h.id for h in service.search("zephyrport", k=5, raw=False)}
    other = Owners(devices=None, users=("someone-else",))
    assert note.id not in {h.id for h in service.search("zephyrport", k=5, owners=other)}
    until = NOW - timedelta(hours=1)
    assert note.id not in {h.id for h in service.search("zephyrport", k=5, until=until)}

    engine.index(journal.by_ids([note.id]))  # the worker catches up: the store answers
    journal.advance([note.id], INDEXED)
    assert [h.id for h in service.search("zephyrport", k=5)].count(note.id) == 1
    journal.close()


def test_a_context_pack_holds_a_journaled_event_before_it_is_indexed(make_config) -> None:
    """An agent asking for context right after a save gets the save, as a search would;
    once indexed, the pack holds it once; a memory:read pack (no raw events) never."""
    _, journal, engine, service, note = a_note_not_yet_indexed(make_config)

    pack = service.context("which port does zephyrport listen on", 2000)
    assert "8081" in pack["markdown"]
    assert "8081" not in service.context("zephyrport port", 2000, raw=False)["markdown"]
    other = Owners(devices=None, users=("someone-else",))
    assert "8081" not in service.context("zephyrport port", 2000, owners=other)["markdown"]

    engine.index(journal.by_ids([note.id]))  # the worker catches up: the store answers
    journal.advance([note.id], INDEXED)
    assert service.context("zephyrport port", 2000)["markdown"].count("listens on 8081") == 1
    journal.close()


def test_question_words_are_not_required() -> None:
    assert query_words("What port does the local Qwen endpoint listen on?") == [
        "port", "local", "qwen", "endpoint", "listen"]
    assert query_words("fix/decay-applied-twice v0.9.3") == ["fix/decay-applied-twice",
                                                             "v0.9.3"]


def test_the_journal_matches_words_literally(tmp_path) -> None:
    """`_` and `%` in a query word are themselves, not LIKE's wildcards."""
    journal = Journal(tmp_path / "j.sqlite3")
    exact, near = saved("retry_budget = 36"), saved("retryXbudget = 36", minutes_ago=2)
    journal.append(Batch("files", [exact, near]))
    assert [e.id for e in journal.new_matching(["retry_budget"], 5)] == [exact.id]
    assert journal.new_matching(["36%"], 5) == []
    journal.close()


def test_a_time_expression_is_a_range_not_a_word_to_match(make_config) -> None:
    """"zephyrport today" finds the note saved a minute ago, as the store's search reads
    "today" as a range; "zephyrport last week" does not (the note is from today)."""
    _, journal, _, service, note = a_note_not_yet_indexed(make_config)

    assert service.search("zephyrport today", k=5)[0].id == note.id
    assert "8081" in service.context("which port does zephyrport listen on today", 2000)["markdown"]
    assert note.id not in {h.id for h in service.search("zephyrport last week", k=5)}
    assert note.id not in {h.id for h in service.search("zephyrport yesterday", k=5)}
    journal.close()
