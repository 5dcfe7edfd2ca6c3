"""A forget that lands while an index step is in flight (its batch read from the journal,
its store commit not yet made) must not let that step put the forgotten event back.
The test opens that window on purpose: the forget runs, from another thread, between
the batch's embedding and its store commit, on a real LanceDB store and journal."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from collectors.base import Batch, Event
from daemon.config import load_config
from daemon.intake.journal import Journal
from daemon.pipeline.steps import Pipeline
from daemon.service import MemoryService
from daemon.store.engine import Engine

WORD = "zqxforgetrace"


def test_a_forget_during_an_index_step_is_not_undone_by_its_commit(
        make_config: Any, tmp_path: Path) -> None:
    cfg = load_config(make_config(pipeline={"summarize": False}))
    journal = Journal(cfg.data_path / "journal.sqlite3")
    now = datetime.now(UTC)
    secret = Event.new(ts=now - timedelta(minutes=2), source="shell", kind="shell.command",
                       subject=f"curl https://{WORD}.example/api", text="balance 4711")
    other = Event.new(ts=now - timedelta(minutes=1), source="shell", kind="shell.command",
                      subject="pytest -q tests/test_ranker.py", text="exit 0")
    journal.append(Batch("shell", [secret, other]))
    engine = Engine(cfg)
    service = MemoryService(cfg, journal, engine)
    pipeline = Pipeline(cfg, journal, engine)

    store = engine.store
    commit = store.upsert_events
    forgot: dict[str, Any] = {}

    def commit_after_a_forget(rows: list[dict[str, Any]]) -> None:
        # the batch is read and embedded; its commit waits for a whole forget to run
        t = threading.Thread(target=lambda: forgot.update(service.forget(query=WORD)))
        t.start()
        t.join()
        commit(rows)

    store.upsert_events = commit_after_a_forget  # type: ignore[method-assign]
    assert pipeline.index_step() == 2
    store.upsert_events = commit  # type: ignore[method-assign]

    assert forgot["journal"] == 1  # the forget saw the event in the journal only
    assert store.ids("events", f"lower(doc) LIKE '%{WORD}%'") == []
    assert store.text_search("events", WORD, 5) == []
    assert secret.id not in {h.id for h in engine.search(f"{WORD} balance", 5)}
    assert [h.id for h in engine.search("pytest ranker", 5)][:1] == [other.id]
    assert journal.known([secret.id, other.id]) == {other.id}
    # and a later replay of the same history cannot bring it back either
    journal.append(Batch("shell", [secret]))
    assert pipeline.index_step() == 0
    assert store.counts()["events"] == 1
    engine.close()
