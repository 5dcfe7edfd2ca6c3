"""The independent hallucination check, and memories that cannot say what their events
do not: an invented path is caught and dropped, placeholders and event kinds never become
tasks, a digest never repeats a sentence, and (with the bundled 0.5B model) a chunk memory
keeps the invoice number and the weekday its file names."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collectors.base import Event
from daemon.pipeline import faithful
from daemon.pipeline.chunking import Chunk
from daemon.pipeline.compaction import digest_fields, digest_row
from daemon.pipeline.compaction import source_text as compaction_sources
from daemon.pipeline.summarize import chunk_fields, memory_row, source_text

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # a Tuesday


def ev(source: str, subject: str, text: str = "", title: str = "", minute: int = 0) -> Event:
    kinds = {"files": "file.modified", "shell": "shell.command", "browser": "browser.visit"}
    return Event.new(ts=T0 + timedelta(minutes=minute), source=source, kind=kinds[source],
                     subject=subject, title=title or subject, text=text)


INVOICE = ev("files", "/home/u/notes/vendors/alpaca.md",
             "# Alpaca wool\n\nThe alpaca invoice INV-77231 is disputed; call the vendor on "
             "Monday.\nAmount: €1,240 for 3 bales.\n")
GIT = Chunk((ev("shell", "cd ~/work/shop", minute=0), ev("shell", "git pull --rebase", minute=1)))


def test_a_summary_with_an_invented_path_is_caught_and_repaired() -> None:
    src = "cd ~/work/shop\ngit pull --rebase\n"
    summary = ("Pulled the latest changes in ~/work/shop. "
               "They edited src/shop/version_bump.py on branch feature/new-ui for JIRA-42.")
    verdict = faithful.check(summary, src)
    assert not verdict.ok
    assert {"src/shop/version_bump.py", "feature/new-ui", "JIRA-42"} <= set(verdict.unsupported)
    assert "~/work/shop" not in verdict.unsupported  # what the events hold passes
    assert faithful.repair(summary, src) == "Pulled the latest changes in ~/work/shop."


def test_every_kind_of_identifier_is_checked_and_numbers_compare_by_value() -> None:
    src = ("https://www.example.com/docs/pricing/ costs $3,900; v0.9.3; #231 INV-77231 "
           "DEDUPE_WINDOW summarize_page DecayModel 'live in 10 days' Monday 36 h")
    for said in ("example.com/docs/pricing", "3900", "$3,900", "v0.9.3", "#231", "INV-77231",
                 "dedupe_window", "summarize_page", "DecayModel", '"live in 10 days"',
                 "Monday", "36 h"):
        assert faithful.check(said, src).ok, said
    for invented in ("v0.9.4", "#232", "INV-77232", "$4,900", "summarize_pages",
                     "DecayModels", "Friday", "other.org", '"live in 12 days"', "/etc/shop.conf"):
        assert not faithful.check(invented, src).ok, invented


def test_the_models_inventions_never_reach_the_chunk_memory() -> None:
    answer = json.dumps({
        "summary": "Working on a ticket to update the project's version number in "
                   "pyproject.toml on branch release/v2.0.",
        "decisions": ["What was decided?"],
        "open_tasks": ["browser.visit", "Create a new branch for the Heron project."]})
    fields = chunk_fields(GIT, answer)
    text = memory_row(GIT, fields, "m", [0.0])["text"]
    assert fields.fallback  # its only sentence named what the events lack
    assert {"pyproject.toml", "release/v2.0"} <= set(fields.unsupported)
    assert "pyproject" not in text and "Heron" not in text and "What was decided" not in text
    assert fields.decisions == [] and fields.open_tasks == []
    assert "git pull --rebase" in text and "~/work/shop" in text  # the activity, extracted
    assert faithful.check(text, source_text(GIT)).ok


def test_file_facts_decisions_and_tasks_are_extracted_verbatim() -> None:
    note = ev("files", "/home/u/notes/infra/costs.md",
              "# Costs\n\nDecision: go with 0.82 per week.\n- [x] route summarize_page to "
              "qwen-local\n- [ ] cap fetched pages per question at 6\n", minute=2)
    chunk = Chunk((INVOICE, note))
    fields = chunk_fields(chunk, "")
    text = memory_row(chunk, fields, "m", [0.0])["text"]
    for fact in ("INV-77231", "Monday", "€1,240", "0.82 per week"):
        assert fact in text, fact
    assert "Decision: go with 0.82 per week." in fields.decisions
    assert "route summarize_page to qwen-local" in fields.decisions
    assert fields.open_tasks == ["cap fetched pages per question at 6"]


def _chunk_row(chunk: Chunk, answer: str) -> dict:
    row = memory_row(chunk, chunk_fields(chunk, answer), "m", [0.0])
    row["created"] = T0
    return row


def test_a_digest_never_repeats_a_sentence_nor_keeps_an_invented_one() -> None:
    probes = [Chunk((ev("files", f"/home/u/heron/probe-{i}.txt",
                        f"sync probe note {i} about the heron project", minute=10 * i),))
              for i in range(12)]
    rows = [_chunk_row(c, '{"summary": "They opened the project and started working on the '
                          'invoice dispute.", "decisions": [], "open_tasks": []}') for c in probes]
    answer = json.dumps({"summary": (
        "They decided to open the heron project and start working. " * 4
        + "They wrote triangle_area.py for ticket HERON-14. They read probe notes.")})
    fields = digest_fields("day", "2026-11-24", rows, answer)
    text = digest_row("day", "2026-11-24", rows, fields, "m", [0.0])["text"]
    assert faithful.repeated(text) == []
    assert "triangle_area.py" not in text and "HERON-14" not in text
    assert {"triangle_area.py", "HERON-14"} <= set(fields.unsupported)
    assert fields.decisions == [] and fields.open_tasks == []
    # the fallback (model gave nothing) repeats nothing either
    text = digest_row("day", "2026-11-24", rows, digest_fields("day", "2026-11-24", rows, ""),
                      "m", [0.0])["text"]
    assert faithful.repeated(text) == []
    # ... and names nothing its sources lack: no count of them (12 is in no source)
    assert faithful.check(text, compaction_sources(rows)).ok, text


@pytest.mark.slow
def test_the_bundled_model_keeps_the_invoice_and_the_weekday(gguf: Path) -> None:
    """Real 0.5B model under the schema: what it writes is checked; the memory keeps the
    file's invoice number, amount and weekday whatever the model says. Slow on a busy box
    (10 min at load 15; seconds when quiet):
    `pytest -m slow tests/daemon/pipeline/test_faithful.py`."""
    from llama_cpp import Llama

    from daemon.pipeline.summarize import RESPONSE_FORMAT, prompt

    llm = Llama(model_path=str(gguf), n_ctx=4096, n_threads=2, verbose=False, seed=7)
    chunk = Chunk((INVOICE,))
    out = llm.create_chat_completion(messages=prompt(chunk), max_tokens=120, temperature=0.2,
                                     response_format=RESPONSE_FORMAT)
    fields = chunk_fields(chunk, out["choices"][0]["message"]["content"] or "")
    text = memory_row(chunk, fields, "qwen", [0.0])["text"]
    for fact in ("INV-77231", "Monday", "€1,240", "/home/u/notes/vendors/alpaca.md"):
        assert fact in text, (fact, text)
    assert faithful.check(text, source_text(chunk)).ok, text


def test_a_topic_whose_words_are_not_the_events_is_dropped() -> None:
    mail = Chunk((ev("browser", "https://mail.google.com/mail/u/0/#inbox", title="Inbox - Gmail"),
                  ev("browser", "https://www.deepl.com/translator", title="DeepL Translate",
                     minute=1)))
    invented = chunk_fields(mail, '{"summary": "Google Mail: Project Update", '
                                  '"decisions": [], "open_tasks": []}')
    assert invented.fallback and "Project" not in invented.summary
    assert any(u.startswith("(words)") for u in invented.unsupported)
    said = chunk_fields(mail, '{"summary": "Gmail inbox and DeepL translation", '
                              '"decisions": [], "open_tasks": []}')
    assert not said.fallback and said.summary.startswith("Gmail inbox and DeepL translation.")
