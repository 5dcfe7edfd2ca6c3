"""The write path against the real thing: llama.cpp with the bundled 0.5B model, real
embeddings, real LanceDB. Answers are kept short (few max_tokens): the
behaviour pinned is the harness's, whatever the model writes."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collectors.base import Event
from daemon.config import Config, load_config
from daemon.errors import ConfigError
from daemon.pipeline import compaction
from daemon.pipeline import identifiers as idf
from daemon.pipeline.chunking import Chunk
from daemon.pipeline.summarize import FALLBACK_MODEL, chunk_fields, memory_row
from daemon.store.engine import Engine
from daemon.store.worker import WorkerEngine
from models.base import Message
from models.errors import ModelError
from models.llama_cpp import LlamaCppBackend

MONDAY = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)
OWNER = "~ada@desk"  # the config's identity: every digest id carries its owner
DAY, TUE, WEEK = (f"day-2026-11-16{OWNER}", f"day-2026-11-17{OWNER}",
                  f"week-2026-W47{OWNER}")


def tokens(cfg: Config, chunk: int = 48, digest: int = 48, mode: str = "always") -> Config:
    """`cfg` with short answers; `mode`: which chunks the model reads (these tests pin
    what happens to its answers: every chunk, unless a test says otherwise)."""
    return dataclasses.replace(cfg, compaction=dataclasses.replace(
        cfg.compaction, chunk_max_tokens=chunk, digest_max_tokens=digest, chunk_model=mode))


def shell(when: datetime, cmd: str) -> Event:
    return Event.new(ts=when, source="shell", kind="shell.command", subject=cmd, title=cmd,
                     text=cmd, attrs={"cwd": "/home/dev/src/billing-api"})


def session(day: int, hour: int, *cmds: str) -> list[Event]:
    start = MONDAY + timedelta(days=day, hours=hour - 9)
    return [shell(start + timedelta(minutes=i), c) for i, c in enumerate(cmds)]


def add_chunk(engine: Engine, events: list[Event]) -> str:
    """Store a chunk memory written from its events alone (no model call): the digests
    above it are what these tests are about."""
    chunk = Chunk(tuple(events))
    fields = chunk_fields(chunk, "")
    row = memory_row(chunk, fields, FALLBACK_MODEL, engine.models.embed([fields.summary])[0])
    engine.store.upsert_memories([row])
    return chunk.id


@pytest.fixture
def engine(make_config) -> Engine:
    # days are the user's: pin the zone so the digests' days do not depend on the machine
    e = Engine(tokens(load_config(make_config(search={"timezone": "UTC"},
                                              identity={"device": "desk", "user": "ada"}))))
    yield e
    e.close()


def test_summary_keeps_every_identifier_and_a_failed_answer_never_replaces_it(
        engine: Engine) -> None:
    events = session(0, 9, "git checkout -b hotfix/vat-rounding-BILL-81",
                     "curl -s https://api.acme.test/v2/invoices/INV-2291?expand=lines",
                     "go test ./src/invoices/... -run TestVatRounding")
    first = engine.summarize(events)
    [row] = engine.store.memory_rows(f"id = '{first['id']}'")
    for ident in idf.of_events(events):  # the model's 48 tokens cannot hold them all
        assert ident.lower() in row["text"].lower(), ident
    assert {"BILL-81", "hotfix/vat-rounding-BILL-81"} <= set(row["identifiers"])
    assert row["project"] == "billing-api" and row["dates"] == ["2026-11-16"]
    assert row["text"].strip()

    # The model wrote this chunk's memory (its answer, through the real harness, under
    # the real model's name), then the same chunk comes again and the model's answer is
    # cut to one token: unusable. The written memory stays, word for word.
    chunk = Chunk(tuple(events))
    answer = ('{"summary": "Checked out hotfix/vat-rounding-BILL-81 and ran TestVatRounding.",'
              ' "decisions": [], "open_tasks": []}')
    fields = chunk_fields(chunk, answer)
    assert not fields.fallback
    written = memory_row(chunk, fields, engine.cfg.models.summarizer,
                         engine.models.embed([fields.summary])[0])
    engine.store.upsert_memories([written])
    engine.cfg = tokens(engine.cfg, chunk=1)
    again = engine.summarize(events)
    assert again["fallback"] and again.get("kept")
    [after] = engine.store.memory_rows(f"id = '{first['id']}'")
    assert (after["text"], after["model"]) == (written["text"], engine.cfg.models.summarizer)
    assert after["text"].startswith("Checked out hotfix/vat-rounding-BILL-81 and ran")
    # a new chunk with an unusable answer still gets a full memory, from its events
    fresh = session(0, 14, "terraform plan -out=tfplan", "terraform apply tfplan")
    out = engine.summarize(fresh)
    [mem] = engine.store.memory_rows(f"id = '{out['id']}'")
    assert mem["model"] == FALLBACK_MODEL
    assert "terraform plan -out=tfplan" in mem["text"] and "terraform apply tfplan" in mem["text"]


def test_digests_link_their_sources_and_late_events_redigest_their_day_and_week(
        engine: Engine) -> None:
    mon = add_chunk(engine, session(0, 9, "git switch feature/eu-vat", "make test"))
    tue = add_chunk(engine, session(1, 10, "gh pr view 512", "git merge feature/eu-vat"))
    written = engine.compact()["written"]
    assert written == [TUE, DAY, WEEK]  # days newest first, then the week above them
    rows = {r["id"]: r for r in engine.store.memory_rows("level IN ('day', 'week')")}
    assert rows[DAY]["sources"] == [mon]
    assert rows[TUE]["sources"] == [tue]
    assert rows[WEEK]["sources"] == [DAY, TUE]
    assert rows[DAY]["level"] == "day" and rows[WEEK]["level"] == "week"
    assert "feature/eu-vat" in rows[WEEK]["text"]
    assert engine.compact()["written"] == []  # nothing new: nothing to do

    # a late event: Monday evening's commands arrive on Wednesday
    late = add_chunk(engine, session(0, 18, "psql -c 'select * from tax_rates'",
                                     "git push origin feature/eu-vat"))
    assert engine.compact()["written"] == [DAY, WEEK]
    after = {r["id"]: r for r in engine.store.memory_rows("level IN ('day', 'week')")}
    assert after[DAY]["sources"] == [mon, late]
    assert "psql -c 'select * from tax_rates'" in after[DAY]["text"]
    assert "psql -c 'select * from tax_rates'" in after[WEEK]["text"]
    assert after[TUE]["created"] == rows[TUE]["created"]


def test_the_summarizer_the_digests_loaded_leaves_when_they_are_written(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded_while_asked: list[bool] = []
    real = LlamaCppBackend.complete

    def recording(self: LlamaCppBackend, messages: list[Message], **params: object) -> object:
        out = real(self, messages, **params)
        loaded_while_asked.append(self.loaded)
        return out

    monkeypatch.setattr(LlamaCppBackend, "complete", recording)
    add_chunk(engine, session(0, 9, "git switch feature/eu-vat", "make test"))
    assert engine.compact()["written"] == [DAY, WEEK]
    assert loaded_while_asked == [True]  # the real model wrote the day...
    assert not engine.models.loaded()["summarizer"]  # ...and left with it

    # loaded before the digests (a completion through the router): it stays for its user
    engine.complete_local(engine.cfg.models.summarizer,
                          [{"role": "user", "content": "Say ok."}], {"max_tokens": 2})
    add_chunk(engine, session(0, 18, "git push origin feature/eu-vat"))
    assert engine.compact()["written"] == [DAY, WEEK]
    assert loaded_while_asked == [True, True, True]
    assert engine.models.loaded()["summarizer"]


def test_an_unusable_digest_answer_keeps_the_written_prose_and_gains_the_new_facts(
        engine: Engine) -> None:
    mon = add_chunk(engine, session(0, 9, "git switch feature/eu-vat", "make test"))
    # the model wrote Monday's digest (its answer, through the real harness)
    rows = engine.store.memory_rows(f"id = '{mon}'", compaction.ROW_COLUMNS)
    fields = compaction.digest_fields(
        "day", "2026-11-16", rows, '{"summary": "Switched to feature/eu-vat and ran make test."}')
    assert not fields.fallback
    model = engine.cfg.models.summarizer
    digest = compaction.digest_row("day", "2026-11-16", rows, fields, model,
                                   engine.models.embed([fields.summary])[0], UTC, OWNER)
    engine.store.upsert_memories([digest])
    late = add_chunk(engine, session(0, 17, "kubectl rollout restart deploy/billing"))
    engine.cfg = tokens(engine.cfg, digest=1)  # the model's answer is now "{": nothing
    assert DAY in engine.compact()["written"]
    [after] = engine.store.memory_rows(f"id = '{DAY}'")
    assert after["sources"] == [mon, late]
    assert "kubectl rollout restart deploy/billing" in after["text"]
    # the prose the model wrote and its name stay; the late facts are added to it
    assert after["text"].startswith("Switched to feature/eu-vat and ran make test.")
    assert after["model"] == model


def test_the_worker_proxies_compaction(make_config, tmp_path: Path) -> None:
    w = WorkerEngine(load_config(make_config()), idle_seconds=60)
    try:
        assert w.compact() == {"written": [], "model_errors": [], "more": False}  # nothing to digest
    finally:
        w.close()


def test_days_and_weeks_are_the_users() -> None:
    from zoneinfo import ZoneInfo

    from daemon.pipeline.compaction import day_key, period, week_key

    tokyo = ZoneInfo("Asia/Tokyo")
    late_sunday_utc = datetime(2026, 11, 22, 20, 0, tzinfo=UTC)  # Monday 05:00 in Tokyo
    assert (day_key(late_sunday_utc), week_key(late_sunday_utc)) == ("2026-11-22", "2026-W47")
    assert (day_key(late_sunday_utc, tokyo), week_key(late_sunday_utc, tokyo)) == \
        ("2026-11-23", "2026-W48")
    start, end = period("week", "2026-W48", tokyo)
    assert start == datetime(2026, 11, 22, 15, 0, tzinfo=UTC) and end - start == timedelta(7)


def test_by_default_no_chunk_waits_for_the_model_and_what_it_states_is_kept(
        engine: Engine) -> None:
    engine.cfg = tokens(engine.cfg, mode=Config().compaction.chunk_model)  # the default
    for cmds in (("git pull", "make test", "git status"),
                 ("git commit -m 'TODO: rotate the staging keys'", "git push origin main")):
        done = engine.summarize(session(2, 9 + len(cmds), *cmds))
        assert done["model_asked"] is False and done["seconds"] == 0.0
        [mem] = engine.store.memory_rows(f"id = '{done['id']}'")
        assert mem["model"] == FALLBACK_MODEL and all(c in mem["text"] for c in cmds)
        faithfulness = engine.cfg.data_path / "faithfulness.jsonl"
        assert not faithfulness.exists() or done["id"] not in faithfulness.read_text()


def test_stated_the_model_reads_only_chunks_that_state_a_decision_or_task(
        engine: Engine) -> None:
    engine.cfg = tokens(engine.cfg, mode="stated")
    plain = engine.summarize(session(2, 9, "git pull", "make test", "git status"))
    assert plain["model_asked"] is False and plain["seconds"] == 0.0
    [mem] = engine.store.memory_rows(f"id = '{plain['id']}'")
    assert mem["model"] == FALLBACK_MODEL and "make test" in mem["text"]

    stated = engine.summarize(session(2, 11, "git commit -m 'TODO: rotate the staging keys'",
                                      "git push origin main"))
    assert stated["model_asked"] is True and stated["seconds"] > 0
    [mem] = engine.store.memory_rows(f"id = '{stated['id']}'")
    assert "rotate the staging keys" in mem["text"]


def test_an_unknown_chunk_model_mode_is_refused_with_the_choices(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[compaction]\nchunk_model = "sometimes"\n')
    with pytest.raises(ConfigError, match="never, stated, always"):
        load_config(path)
    path.write_text('[compaction]\nmodel_every_chunk = true\n')  # the older name
    assert load_config(path).compaction.chunk_model_mode == "always"


def test_a_digest_that_echoes_its_instruction_is_replaced_by_the_extracted_one() -> None:
    # the 0.5B model answered a day of the eval kit's week with the prompt's own words
    rows = [{"id": "m1", "ts": MONDAY, "ts_end": MONDAY, "level": "chunk", "source": "shell",
             "project": "billing-api", "title": "shell: make test",
             "text": "Ran git switch feature/eu-vat, make test in billing-api.",
             "identifiers": ["feature/eu-vat"], "entities": [], "decisions": [],
             "open_tasks": [], "dates": ["2026-11-16"], "sources": []}]
    echo = ('{"summary": "Three to five sentences on what the person worked on, per project, '
            'naming files, pages, tickets and commands. Use only what the notes say; never '
            'guess."}')
    fields = compaction.digest_fields("day", "2026-11-16", rows, echo)
    assert fields.fallback and "Three to five" not in fields.summary
    assert "feature/eu-vat" in fields.summary
    assert any("Three to five" in u for u in fields.unsupported)
    said = '{"summary": "Switched to feature/eu-vat and ran make test in billing-api."}'
    kept = compaction.digest_fields("day", "2026-11-16", rows, said)
    assert not kept.fallback and kept.summary.startswith("Switched to feature/eu-vat")


def _chunk_row(when: datetime, text: str, ident: str) -> dict[str, object]:
    return {"id": f"m{when:%d%H}", "ts": when, "ts_end": when, "level": "chunk",
            "source": "shell", "project": "billing-api", "title": "shell", "text": text,
            "identifiers": [ident], "entities": [], "decisions": [], "open_tasks": [],
            "dates": [when.date().isoformat()], "sources": []}


def test_a_day_is_asked_in_plain_sentences_from_notes_without_their_kinds_and_times() -> None:
    rows = [_chunk_row(MONDAY, "Ran git switch feature/eu-vat, make test (shell.command, "
                       "2026-11-16 09:00–09:01 UTC).\nIdentifiers: feature/eu-vat",
                       "feature/eu-vat")]
    system, user = compaction.prompt("day", "2026-11-16", rows)
    assert "- 09:00 [billing-api] Ran git switch feature/eu-vat, make test.\n" in user["content"]
    assert "shell.command" not in user["content"] and "JSON" not in user["content"]
    long = "Visited Hybrid Search - LanceDB, Reranking - LanceDB " * 20
    many = [_chunk_row(MONDAY + timedelta(minutes=i), long, "x") for i in range(30)]
    notes = [n for n in compaction.prompt("day", "2026-11-16", many)[1]["content"].split("\n")
             if n.startswith("- 09:")]
    assert len(notes) >= 15 and all(n.endswith("…") for n in notes)  # cut, at a word's end
    assert {n[:-1].split()[-1] for n in notes} <= set(long.replace(",", "").split())
    plain = "Switched to feature/eu-vat and ran make test in billing-api."
    fields = compaction.digest_fields("day", "2026-11-16", rows, plain)
    assert not fields.fallback and fields.summary == plain
    listed = "1. **Billing-api**: switched to feature/eu-vat\n2. Ran make test"
    assert compaction.prose_answer(listed) == ("Billing-api: switched to feature/eu-vat. "
                                               "Ran make test.")
    # read as prose, found by what it holds: the prose is in the text, not in the doc
    row = compaction.digest_row("day", "2026-11-16", rows, fields, "m", [])
    assert row["text"].startswith(plain) and plain not in row["doc"]
    assert "Ran git switch feature/eu-vat, make test" in row["doc"]


def test_a_week_is_its_days_prose_and_asks_no_model(engine: Engine) -> None:
    add_chunk(engine, session(0, 9, "git switch feature/eu-vat", "make test"))
    add_chunk(engine, session(1, 10, "gh pr view 512", "git merge feature/eu-vat"))
    asked: list[str] = []

    def no_model(task: str, messages: list[dict[str, str]], **_: object) -> None:
        asked.append(messages[-1]["content"].split(":")[0])
        raise ModelError("no model answers in this test")

    engine.models.complete = no_model  # type: ignore[method-assign,assignment]
    out = engine.compact()
    assert out["written"] == [TUE, DAY, WEEK] and len(out["model_errors"]) == 2
    assert asked == ["Notes about the day 2026-11-17", "Notes about the day 2026-11-16"]
    week = engine.store.memory_rows(f"id = '{WEEK}'")[0]
    assert week["model"] == FALLBACK_MODEL
    assert "Monday 2026-11-16: " in week["text"] and "Tuesday 2026-11-17: " in week["text"]
    assert "feature/eu-vat" in week["text"] and "gh pr view 512" in week["text"]
