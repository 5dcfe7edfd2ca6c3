"""Ranking raw events without summaries (`[pipeline] summarize = false`): the same command,
page or file again takes one slot, and a full-text match on one rare word of the question
still counts in the fusion (real embedder, real LanceDB)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collectors.base import Event
from daemon.recall import reads as recall
from daemon.recall import search as fusion
from daemon.recall.search import Filters, fts_query
from daemon.store.lance import Store, event_doc, event_row
from models.assets import embedder_path
from models.sentence_tf import SentenceTransformerBackend

NOW = datetime(2026, 3, 12, 15, 0, tzinfo=UTC)


def ago(hours: float) -> datetime:
    return NOW - timedelta(hours=hours)


def shell(when: datetime, command: str) -> Event:
    return Event.new(ts=when, source="shell", kind="shell.command", subject=command)


def page(when: datetime, url: str, title: str) -> Event:
    return Event.new(ts=when, source="browser", kind="browser.visit", subject=url, title=title)


def file(when: datetime, path: str, text: str) -> Event:
    return Event.new(ts=when, source="files", kind="file.modified", subject=path,
                     title=path.rsplit("/", 1)[-1], text=text)


@pytest.fixture(scope="module")
def embedder(models_dir: Path) -> SentenceTransformerBackend:
    return SentenceTransformerBackend(embedder_path("all-minilm-l6-v2"), name="all-minilm-l6-v2",
                                      dimensions=384, idle_seconds=0)


def stored(tmp_path: Path, embedder: SentenceTransformerBackend, events: list[Event]) -> Store:
    store = Store(tmp_path / "store", 384, "all-minilm-l6-v2")
    vectors = embedder.embed([event_doc(e)[:2000] for e in events])
    store.upsert_events([event_row(e, v) for e, v in zip(events, vectors, strict=True)])
    return store


def test_the_same_command_page_or_file_again_takes_one_slot(
        tmp_path: Path, embedder: SentenceTransformerBackend) -> None:
    cds = [shell(ago(50 - i), "cd ~/src/leadscore") for i in range(4)]
    plan = "/home/u/src/leadscore/notes/release-plan.md"
    drafts = [file(ago(30), plan, "leadscore release plan\n\ndraft: ship on Friday"),
              file(ago(20), plan, "leadscore release plan\n\nship moved to Monday; owner Priya")]
    visits = [page(ago(h), "https://github.com/acme/leadscore/releases/tag/v0.9.3",
                   "Release v0.9.3 · acme/leadscore") for h in (10, 9)]
    others = [shell(ago(12), 'git tag -a v0.9.3 -m "decay fix"'),
              shell(ago(40), "mypy leadscore"), shell(ago(41), "pytest -q"),
              page(ago(44), "https://news.ycombinator.com/", "Hacker News")]
    store = stored(tmp_path, embedder, cds + drafts + visits + others)
    hits = recall.search(store, embedder.embed, "leadscore release", 5, Filters(), now=NOW,
                         tz=UTC)
    subjects = [h.subject for h in hits]
    assert len(set(subjects)) == len(subjects) == 5, subjects  # five different things
    # each repeated thing stands once, at its best event, the others folded into it
    by_subject = {h.subject: h for h in hits}
    for group in (cds, drafts, visits):
        head = by_subject[group[0].subject]
        assert {head.id, *(c.id for c in head.covers)} == {e.id for e in group}
    # no fact of a folded version is lost: both drafts of the plan are in its hit
    note = by_subject[plan].title + by_subject[plan].text
    assert "Friday" in note and "Priya" in note


def test_a_full_text_match_on_one_rare_word_still_counts(
        tmp_path: Path, embedder: SentenceTransformerBackend) -> None:
    # The answer shares one rare word with the question; a note repeating the question's
    # common words scores several times higher in the full-text index.
    target = file(ago(5), "/home/u/src/leadscore/leadscore/dedupe.py",
                  '"""Collapse duplicate buying signals seen from several feeds."""\n'
                  "DEDUPE_WINDOW = timedelta(hours=36)  # closer ones are merged\n")
    loud = file(ago(6), "/home/u/notes/sales-events.md",
                "sales event copies: the sales event page, sales event copies for the "
                "sales event team, copies of every sales event\n")
    filler = [shell(ago(7 + i), c) for i, c in enumerate(
        ["ls -la", "git status", "make test", "htop", "cd ~/src/recruit-flows"])]
    store = stored(tmp_path, embedder, [target, loud, *filler])
    question = "how close together do two copies of the same sales event have to be merged"
    text = store.text_search("events", fts_query(question), 50)
    scores = {h.id: h.score for h in text}
    ratio = scores[target.id] / text[0].score
    assert text[0].id == loud.id and 0.12 < ratio < 0.3, ratio  # a fifth of the best
    vector = embedder.embed([question])[0]
    vec = store.vector_search("events", vector, 50)
    rank_v = [h.id for h in vec].index(target.id)
    rank_t = [h.id for h in text].index(target.id)
    hit = next(h for h in fusion.hybrid_search(store, question, vector, 10, now=NOW)
               if h.id == target.id)
    both = 1 / (fusion.RRF_K + rank_v + 1) + 1 / (fusion.RRF_K + rank_t + 1)
    # fused from both lists (plus a recency bonus far smaller than a rank's share)
    assert both <= hit.score < both + fusion.RECENCY_WEIGHT + 1e-6
