"""A raw event is found by what it was about, with no summary: a page by its URL's words,
a command by its arguments, a file by its name's parts (real embedder, real LanceDB)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collectors.base import Event
from daemon.pipeline.eventtext import event_doc, keys, words
from daemon.recall import reads as recall
from daemon.recall.search import Filters
from daemon.store.lance import Store, event_row
from models.assets import embedder_path
from models.sentence_tf import SentenceTransformerBackend

NOW = datetime(2026, 3, 12, 15, 0, tzinfo=UTC)
DOCS = "https://docs.example.dev/guides/"
# Docs sites title every page alike: only the URL says what each one is about.
PAGES = [f"{DOCS}rate-limiting/retry-with-exponential-backoff", f"{DOCS}authentication/api-keys",
         f"{DOCS}webhooks/signature-verification", f"{DOCS}pagination/cursor-based",
         f"{DOCS}errors/status-codes", f"{DOCS}sdks/python-client-install",
         "https://www.youtube.com/watch?v=dQw4w9WgXcQ", "https://news.ycombinator.com/item?id=1"]


def _events() -> list[Event]:
    out = [Event.new(ts=NOW - timedelta(hours=i + 1), source="browser", kind="browser.visit",
                     subject=url, title="Overview · Example Docs") for i, url in enumerate(PAGES)]
    out.append(Event.new(ts=NOW - timedelta(hours=20), source="files", kind="file.modified",
                         subject="/home/u/src/shop/billing/invoiceReminderScheduler.py",
                         title="invoiceReminderScheduler.py", text="import sched\n"))
    out.append(Event.new(ts=NOW - timedelta(hours=21), source="shell", kind="shell.command",
                         subject="kubectl rollout restart deployment/payments-api", title=""))
    return out


@pytest.fixture(scope="module")
def embedder(models_dir: Path) -> SentenceTransformerBackend:
    return SentenceTransformerBackend(embedder_path("all-minilm-l6-v2"), name="all-minilm-l6-v2",
                                      dimensions=384, idle_seconds=0)


def test_key_words_split_urls_commands_and_names() -> None:
    ev = _events()
    assert keys(ev[0]).startswith(
        "docs example guides rate limiting retry with exponential backoff")
    assert "invoice reminder scheduler" in keys(ev[8]) and "billing" in keys(ev[8])
    assert keys(ev[9]).startswith("kubectl rollout restart deployment payments api")
    noise = words("2f9e1c7a0b 123 www index.html")
    assert noise == []  # hashes, numbers, www and html say nothing
    # the key words come before a file's content: inside the embedder's window
    doc = event_doc(ev[8])
    assert doc.index("invoice reminder scheduler") < doc.index("import sched")


def test_a_question_phrased_by_meaning_finds_the_page_by_its_url_words(
        tmp_path: Path, embedder: SentenceTransformerBackend) -> None:
    events = _events()
    store = Store(tmp_path / "store", 384, "all-minilm-l6-v2")
    vectors = embedder.embed([event_doc(e)[:2000] for e in events])
    store.upsert_events([event_row(e, v) for e, v in zip(events, vectors, strict=True)])
    asks = {
        "the docs page on how to back off and retry when requests get rate limited": events[0],
        "where did I read how to check that a webhook's signature is valid": events[2],
        "the python file that schedules reminders about unpaid invoices": events[8],
        "which deployment did I restart on the cluster for payments": events[9],
    }
    for question, want in asks.items():
        hits = recall.search(store, embedder.embed, question, 3, Filters(), now=NOW, tz=UTC)
        ids = [h.id for h in hits]
        # pages titled alike: the one whose URL says it comes first; others in the top 3
        assert (ids[:1] if want.source == "browser" else ids) and want.id in (
            ids[:1] if want.source == "browser" else ids), (question, [h.title for h in hits])
