"""Deterministic identifier extraction, and what a memory's text must carry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from collectors.base import Event
from daemon.pipeline import identifiers as idf
from daemon.pipeline.chunking import Chunk
from daemon.pipeline.summarize import chunk_fields, memory_row, parse

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def shell(cmd: str, minute: int = 0) -> Event:
    return Event.new(ts=T0 + timedelta(minutes=minute), source="shell", kind="shell.command",
                     subject=cmd, title=cmd, text=cmd)


def test_identifiers_come_from_paths_urls_tickets_branches_and_commands() -> None:
    f = Event.new(ts=T0, source="files", kind="file.modified",
                  subject="/home/dev/src/crm/model/score.py", title="score.py",
                  text="# TODO(CRM-9): cap the budget\nsee https://not.mined.example/x\n")
    b = Event.new(ts=T0, source="browser", kind="browser.visit",
                  subject="https://github.com/acme/crm/pull/412",
                  title="CRM-77 fix rounding · Pull Request #412 · acme/crm")
    s = shell("git push -u origin feature/lead-v2 && curl https://api.example.com/v1/leads?x=1")
    assert idf.of_event(f) == ["/home/dev/src/crm/model/score.py"]  # contents are not mined
    assert idf.of_event(b)[:3] == ["https://github.com/acme/crm/pull/412", "CRM-77", "#412"]
    ids = idf.of_event(s)
    assert ids[0].startswith("git push -u origin feature/lead-v2")
    assert "https://api.example.com/v1/leads?x=1" in ids
    assert "feature/lead-v2" in ids
    assert idf.of_event(shell("ls")) == [] and idf.of_event(shell("cd ..")) == []
    assert idf.todos_of([f]) == ["CRM-9: cap the budget"]
    assert idf.dates_of([f]) == ["2026-11-24"]


def test_what_the_model_loses_is_put_back_and_what_it_invents_is_dropped() -> None:
    chunk = Chunk((shell("git checkout -b fix/rounding-BILL-81", 0),
                   shell("pytest tests/test_invoice.py -k vat", 1),
                   shell('git commit -m "wip: vat rounding; next: run the invoice vat tests"', 2)))
    answer = ('{"summary": "Worked on invoice rounding and ran the tests.", "entities": '
              '["Stripe"], "identifiers": ["src/made_up.py", "tests/test_invoice.py"], '
              '"dates": ["2031-01-01"], "decisions": [], "open_tasks": ["ship the fix", '
              '"run the invoice vat tests"]}')
    fields = chunk_fields(chunk, answer)
    assert not fields.fallback
    assert "src/made_up.py" not in fields.identifiers  # not in the events: invented
    assert fields.entities == [] and fields.dates == ["2026-11-24"]
    row = memory_row(chunk, fields, "m", [0.0])
    for ident in idf.of_events(chunk.events):
        assert ident.lower() in row["text"].lower(), ident
    assert row["text"].startswith("Worked on invoice rounding")
    # a task the events state is kept; one they do not ("ship the fix") is not
    assert "Open tasks: run the invoice vat tests" in row["text"]
    assert "ship the fix" not in row["text"]
    assert set(row["identifiers"]) >= {"BILL-81", "fix/rounding-BILL-81"}


def test_an_empty_or_garbage_answer_gives_a_summary_written_from_the_events() -> None:
    chunk = Chunk((shell("make deploy ENV=staging", 0), shell("kubectl rollout status web", 1)))
    for answer in ("", "{", "[]", '{"summary": ""}', '{"summary": "{}"}', "null"):
        fields = chunk_fields(chunk, answer)
        assert fields.fallback, answer
        text = memory_row(chunk, fields, "m", [0.0])["text"]
        assert "make deploy ENV=staging" in text and "kubectl rollout status web" in text
    # an answer cut off by max_tokens keeps the summary it got to write
    cut = '{"summary": "Deployed to staging with make.", "entities": ["kub'
    assert parse(cut) == {"summary": "Deployed to staging with make."}
    assert not chunk_fields(chunk, cut).fallback


def test_a_busy_days_digest_prompt_stays_within_the_small_models_context() -> None:
    from daemon.pipeline.compaction import MAX_PROMPT_CHARS, prompt

    rows = [{"id": f"m{i}", "ts": T0 + timedelta(minutes=i), "project": "crm",
             "text": "Edited score.py and ran the tests. " * 20, "open_tasks": ["ship it"]}
            for i in range(300)]
    messages = prompt("day", "2026-11-24", rows)
    body = messages[-1]["content"]
    assert len(body) < MAX_PROMPT_CHARS + 600  # ~700 tokens at most, of 4,096
    listed = [ln for ln in body.split("\n") if ln.startswith("- 0") or ln.startswith("- 1")]
    assert f"- … and {300 - len(listed)} more" in body and len(listed) >= 15


def note(text: str) -> Event:
    return Event.new(ts=T0, source="files", kind="file.modified",
                     subject="/home/dev/notes/ops.md", title="ops.md", text=text)


def test_decisions_are_the_lines_that_state_a_choice() -> None:
    ops = note("# memsync incident\n"
               "Cause: the tunnel died on suspend.\n"
               "Fix: tunnel under autossh as a systemd user service.\n"
               "- hiring: no full-time hire before the Fjordline contract is signed\n"
               "- audit: €3,900 fixed (was €2,900 in spring)\n"
               "- [x] dry run locally first\n"
               "- [ ] send Priya the CSV\n"
               "- no idea why the VPN drops\n"
               "- the old value was 12\n")
    assert idf.decisions_of([ops]) == [
        "Fix: tunnel under autossh as a systemd user service.",
        "hiring: no full-time hire before the Fjordline contract is signed",
        "audit: €3,900 fixed (was €2,900 in spring)", "dry run locally first"]
    assert idf.todos_of([ops]) == ["send Priya the CSV"]


def test_a_files_names_numbers_and_days_are_kept_in_its_memory() -> None:
    """A chunk memory keeps every identifier-looking token of its saved files (measured by
    the independent check's tokenizer, daemon/pipeline/faithful.py): invoice numbers,
    amounts, versions, hosts, weekdays, snake_case and CamelCase names, quoted phrases.
    They come last ("Mentions:"), after the subjects in what is indexed, and the memory
    still names nothing its sources lack."""
    from daemon.pipeline import faithful
    from daemon.pipeline.compaction import _prose
    from daemon.pipeline.summarize import MENTIONS_LINE

    code = ('"""Disputes."""\n'
            "def dispute(ledger):\n"
            "    # The alpaca invoice INV-77231 is disputed; call the vendor on Monday.\n"
            "    ledger.hold(amount=\"€3,900\", days=14, host='billing.kestrel.dev:7437')\n"
            '    retry_budget = 36  # see "the slow path" and PricingCard, v0.9.3\n'
            '    ap.add_argument("--min-score", default=0.65)\n')
    f = Event.new(ts=T0, source="files", kind="file.modified",
                  subject="/home/ana/src/ledger/disputes.py", title="disputes.py", text=code)
    chunk = Chunk((f,))
    row = memory_row(chunk, chunk_fields(chunk, ""), "m", [0.0])
    kept = faithful.Sources(row["text"])
    assert [t for t in faithful.tokens(code) if not kept.has(t)] == []
    sources = f"{f.kind} 2026-11-24 09:00 Tuesday November\n{f.subject}\n{f.title}\n{code}"
    assert faithful.check(row["text"], sources).ok
    assert MENTIONS_LINE in row["text"] and "INV-77231" in row["text"]
    assert row["doc"].index(f.subject) < row["doc"].index(MENTIONS_LINE.strip())
    assert "Mentions" not in _prose(row)  # a digest's prompt does not carry the list
