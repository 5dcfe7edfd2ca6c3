"""The write path against the real thing: llama.cpp with the bundled 0.5B model under a
JSON schema, real embeddings, real LanceDB. Answers are kept short (few max_tokens): the
behaviour pinned is the harness's, whatever the model writes."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collectors.base import Event
from daemon.pipeline import identifiers as idf
from daemon.pipeline.chunking import Chunk
from daemon.config import Config, load_config
from daemon.store.engine import Engine
from daemon.pipeline.summarize import FALLBACK_MODEL, chunk_fields, memory_row
from daemon.store.worker import WorkerEngine

MONDAY = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)


def tokens(cfg: Config, chunk: int = 48, digest: int = 48) -> Config:
    return dataclasses.replace(cfg, compaction=dataclasses.replace(
        cfg.compaction, chunk_max_tokens=chunk, digest_max_tokens=digest))


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
    e = Engine(tokens(load_config(make_config(search={"timezone": "UTC"}))))
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

    # the same chunk again, and the model's answer is cut to one token: unusable
    engine.cfg = tokens(engine.cfg, chunk=1)
    again = engine.summarize(events)
    assert again["fallback"]
    [after] = engine.store.memory_rows(f"id = '{first['id']}'")
    if not first["fallback"]:  # a summary the model wrote stays
        assert (after["text"], after["model"]) == (row["text"], row["model"])
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
    assert written == ["day-2026-11-16", "day-2026-11-17", "week-2026-W47"]
    rows = {r["id"]: r for r in engine.store.memory_rows("level IN ('day', 'week')")}
    assert rows["day-2026-11-16"]["sources"] == [mon]
    assert rows["day-2026-11-17"]["sources"] == [tue]
    assert rows["week-2026-W47"]["sources"] == ["day-2026-11-16", "day-2026-11-17"]
    assert rows["day-2026-11-16"]["level"] == "day" and rows["week-2026-W47"]["level"] == "week"
    assert "feature/eu-vat" in rows["week-2026-W47"]["text"]
    assert engine.compact()["written"] == []  # nothing new: nothing to do

    # a late event: Monday evening's commands arrive on Wednesday
    late = add_chunk(engine, session(0, 18, "psql -c 'select * from tax_rates'",
                                     "git push origin feature/eu-vat"))
    assert engine.compact()["written"] == ["day-2026-11-16", "week-2026-W47"]
    after = {r["id"]: r for r in engine.store.memory_rows("level IN ('day', 'week')")}
    assert after["day-2026-11-16"]["sources"] == [mon, late]
    assert "psql -c 'select * from tax_rates'" in after["day-2026-11-16"]["text"]
    assert "psql -c 'select * from tax_rates'" in after["week-2026-W47"]["text"]
    assert after["day-2026-11-17"]["created"] == rows["day-2026-11-17"]["created"]


def test_an_unusable_digest_answer_keeps_the_written_prose_and_gains_the_new_facts(
        engine: Engine) -> None:
    mon = add_chunk(engine, session(0, 9, "git switch feature/eu-vat", "make test"))
    engine.compact()
    [before] = engine.store.memory_rows("id = 'day-2026-11-16'")
    late = add_chunk(engine, session(0, 17, "kubectl rollout restart deploy/billing"))
    engine.cfg = tokens(engine.cfg, digest=1)  # the model's answer is now "{": nothing
    assert "day-2026-11-16" in engine.compact()["written"]
    [after] = engine.store.memory_rows("id = 'day-2026-11-16'")
    assert after["sources"] == [mon, late]
    assert "kubectl rollout restart deploy/billing" in after["text"]
    assert after["text"].strip()
    if before["model"] != FALLBACK_MODEL:  # the model wrote it: its prose and name stay
        prose = before["text"].split("\n")[0]
        assert after["text"].startswith(prose) and after["model"] == before["model"]


def test_the_worker_proxies_compaction(make_config, tmp_path: Path) -> None:
    w = WorkerEngine(load_config(make_config()), idle_seconds=60)
    try:
        assert w.compact() == {"written": []}  # an empty store has nothing to digest
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
