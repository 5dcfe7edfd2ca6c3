""""What is still open" lists the open tasks the memories carry, within the budget, though
the question shares no word with them (real embedder, real LanceDB)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from daemon.recall import agenda
from daemon.recall import reads as recall
from daemon.store.lance import Store
from models.assets import embedder_path
from models.sentence_tf import SentenceTransformerBackend

NOW = datetime(2026, 3, 12, 15, 0, tzinfo=UTC)
TASKS = [f"ask vendor {i} for the signed quote INV-{7000 + i}" for i in range(30)]


@pytest.fixture(scope="module")
def embedder(models_dir: Path) -> SentenceTransformerBackend:
    return SentenceTransformerBackend(embedder_path("all-minilm-l6-v2"), name="all-minilm-l6-v2",
                                      dimensions=384, idle_seconds=0)


def _memory(store: Store, embedder: SentenceTransformerBackend, i: int,
            **lists: list[str]) -> None:
    text = f"Edited notes/vendors-{i}.md in procurement."
    row: dict[str, Any] = {
        "id": f"m{i}", "ts": NOW - timedelta(hours=i + 1), "ts_end": NOW - timedelta(hours=i),
        "level": "chunk", "source": "files", "title": f"files notes {i}", "text": text,
        "event_ids": [], "model": "deterministic", "created": NOW, "doc": text,
        "vector": embedder.embed([text])[0], "project": "procurement"}
    for name in store.memories.schema.names:
        row.setdefault(name, lists.get(name, []) if name != "project" else "")
    store.upsert_memories([row])


def test_the_open_tasks_lead_the_pack_for_what_is_still_open(
        tmp_path: Path, embedder: SentenceTransformerBackend) -> None:
    store = Store(tmp_path / "store", 384, "all-minilm-l6-v2")
    for i in range(0, 30, 3):
        _memory(store, embedder, i, open_tasks=TASKS[i:i + 3],
                decisions=[f"go with vendor {i}"])
    _memory(store, embedder, 99, open_tasks=[TASKS[0]])  # the same task again: listed once
    pack = recall.context(store, embedder.embed, "what is still open", 2000, now=NOW, tz=UTC)
    md = pack["markdown"]
    assert pack["tokens"] <= 2000
    assert "### Open tasks" in md and "### Decisions" not in md
    listed = md.split("\n\n")[1]  # the list, before the search hits
    assert listed.startswith("### Open tasks")
    for task in TASKS:
        assert listed.count(task) == 1, task
    decided = recall.context(store, embedder.embed, "what did I decide", 2000, now=NOW, tz=UTC)
    assert "go with vendor 27" in decided["markdown"]
    # a small budget cuts the list between items, never past the budget
    small = recall.context(store, embedder.embed, "what is still open", 300, now=NOW, tz=UTC)
    assert small["tokens"] <= 300 and TASKS[0] in small["markdown"]


def test_which_questions_ask_for_tasks_or_decisions() -> None:
    assert agenda.asks_for("what is still open") == ["open_tasks"]
    assert agenda.asks_for("anything left to do on leadscore?") == ["open_tasks"]
    assert agenda.asks_for("what did we decide about pricing") == ["decisions"]
    assert agenda.asks_for("which page did I read about LanceDB") == []
