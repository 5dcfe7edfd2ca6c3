"""Event ids carry their owner (schema 4): two devices that touch one path in one second
keep two rows, and a data dir written by the release before (fixture written by memoryd
at commit b25950a, see its generate.py) migrates in place: journal and store agree on
every new id, nothing is lost or doubled, nothing forgotten comes back."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from collectors.base import Batch, Event
from daemon.config import load_config
from daemon.intake.journal import Journal
from daemon.owners import owned_id
from daemon.store.engine import Engine
from daemon.store.lance import SCHEMA_VERSION, Store, event_row

FIXTURE = Path(__file__).parents[1] / "fixtures" / "store_b25950a" / "data"
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
ALICE, BOB = "alice@desk", "bob@laptop"


def plan(i: int) -> Event:
    """The fixture's events, as its generate.py made them (collector ids)."""
    return Event.new(ts=T0.timestamp() + 3600 * i, source="files", kind="file.modified",
                     subject=f"/home/alice/notes/plan-{i}.md", title=f"plan {i}",
                     text=f"quarterly plan part {i}: ship the orca-{i} release")


def test_two_owners_saving_one_path_in_one_second_keep_two_rows(tmp_path: Path) -> None:
    same = Event.new(ts=T0, source="files", kind="file.modified", subject="/srv/app/main.py",
                     title="main.py", text="shared checkout")
    ids = []
    for owner in (ALICE, BOB):
        journal = Journal(tmp_path / f"{owner}.sqlite3", owner=owner)
        assert journal.append(Batch("files", [same])) == 1
        assert journal.append(Batch("files", [same])) == 0  # a replay still dedupes
        assert journal.known([same.id]) == {same.id}
        [stored] = journal.at_stage(0, 5)
        ids.append(stored.id)
        journal.close()
    assert ids[0] != ids[1] and ids == [owned_id(ALICE, same.id), owned_id(BOB, same.id)]
    store = Store(tmp_path / "store", 384, "all-minilm-l6-v2")
    store.upsert_events([{**event_row(Event(**{**same.__dict__, "id": i}), [0.1] * 384),
                          "device": o.split("@")[1], "user": o.split("@")[0]}
                         for i, o in zip(ids, (ALICE, BOB), strict=True)])
    rows = store.rows("events")
    assert sorted((r.user, r.id) for r in rows) == sorted(
        [("alice", ids[0]), ("bob", ids[1])])


def test_a_data_dir_of_the_previous_release_migrates_in_place(
        tmp_path: Path, models_dir: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(FIXTURE, data)
    old = sqlite3.connect(data / "journal.sqlite3")
    before = {r[0] for r in old.execute("SELECT id FROM events")}
    dead = {r[0] for r in old.execute("SELECT id FROM forgotten WHERE kind='event'")}
    old.close()
    assert before == {plan(0).id, plan(1).id} and dead == {plan(2).id}

    (tmp_path / "c.toml").write_text(
        f'data_dir = "{data}"\n[identity]\ndevice = "desk"\nuser = "alice"\n'
        f'[models]\ndir = "{models_dir}"\n[search]\ntimezone = "UTC"\n')
    cfg = load_config(tmp_path / "c.toml")
    journal = Journal(data / "journal.sqlite3", owner=ALICE)
    mine = {owned_id(ALICE, i) for i in before}
    assert {e.id for e in journal.at_stage(0, 10)} == mine  # mapped, none lost or doubled
    # the same history read again adds nothing; the forgotten event stays forgotten
    assert journal.append(Batch("files", [plan(0), plan(1), plan(2)])) == 0
    assert journal.counts()["total"] == 2

    engine = Engine(cfg)
    store = engine.store
    for table in (store.events, store.memories):
        assert table.schema.metadata[b"memoryd.schema_version"] == SCHEMA_VERSION.encode()
    events = {r.id: r for r in store.rows("events")}
    bob = Event.new(ts=T0.timestamp() + 30, source="files", kind="file.modified",
                    subject="/home/alice/notes/plan-0.md", title="bob's plan",
                    text="bob edits the same path: heron budget")
    assert set(events) == mine | {owned_id(BOB, bob.id)}
    assert events[owned_id(BOB, bob.id)].user == "bob"  # each row under its own owner

    mems = {r["id"]: r for r in store.memory_rows("level != ''")}
    chunks = [m for m in mems.values() if m["level"] == "chunk"]
    assert sorted(i for m in chunks for i in m["event_ids"]) == sorted(mine)
    day, week = f"day-2026-11-30~{ALICE}", f"week-2026-W49~{ALICE}"
    assert set(mems) == {m["id"] for m in chunks} | {day, week}
    assert sorted(mems[day]["sources"]) == sorted(m["id"] for m in chunks)
    assert mems[week]["sources"] == [day]
    assert engine.compact()["written"] == []  # the migrated digests are current: no twins
    hits = engine.search("orca-1 release", k=3)
    assert hits and any("orca-1" in (h.text or "") for h in hits)
    assert not any("orca-2" in (h.text or "") for h in engine.search("orca-2 release", k=5))
    engine.close()
    journal.close()
    again = Journal(data / "journal.sqlite3", owner=ALICE)  # a second open maps nothing
    assert {e.id for e in again.at_stage(0, 10)} == mine
    again.close()
