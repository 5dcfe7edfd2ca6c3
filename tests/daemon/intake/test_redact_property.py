"""The property: any secret of the covered formats, embedded anywhere in arbitrary text
(in the text, the subject, the title, an attr however nested, a URL's userinfo or query),
never reaches the journal: redaction runs, the journal writes, and the SQLite file and its
WAL are scanned byte for byte. (The store is filled only from the journal; the corpus
test scans it too, through a real daemon.)"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.base import Batch, Event
from daemon.intake.journal import Journal
from daemon.intake.redact import _CLEAN, redact, redact_batch
from tests.daemon.intake.secret_corpus import FORMATS

# Arbitrary text, kept short so a row fits in one SQLite page (a value split over
# overflow pages could hide a secret from a byte scan; the rows are read back too).
_text = st.text(max_size=120)
# What separates the secret from the text around it: a token glued to letters on both
# sides ("xAKIA...y") is another word, for memoryd as for gitleaks.
_sep = st.sampled_from([" ", "\n", "\t", ", ", "; ", "(", ")", " | ", " = ", "\n\n", "'", '"',
                        " -- ", "<", ">", "[", "]"])


@st.composite
def embedded(draw: st.DrawFn) -> tuple[str, str, str]:
    name = draw(st.sampled_from(sorted(FORMATS)))
    written, secret = FORMATS[name](random.Random(draw(st.integers(0, 2**32))))
    text = draw(_text) + draw(_sep) + written + draw(_sep) + draw(_text)
    return name, text, secret


@st.composite
def placed(draw: st.DrawFn) -> tuple[str, Event, str]:
    name, text, secret = draw(embedded())
    where = draw(st.sampled_from(["text", "subject", "title", "attrs", "attrs-nested",
                                  "url-query", "url-userinfo"]))
    fields = {"subject": "/home/ana/notes.md", "title": "notes", "text": "", "attrs": {}}
    if where in ("text", "subject", "title"):
        fields[where] = text
    elif where == "attrs":
        fields["attrs"] = {draw(st.sampled_from(["note", "cmd", "body"])): text}
    elif where == "attrs-nested":
        fields["attrs"] = {"request": {"argv": ["x", text], "meta": {"n": 1}}}
    elif where == "url-query":
        param = draw(st.sampled_from(["token", "code", "access_token", "key", "api_key",
                                      "secret", "password", "sig", "client_secret"]))
        fields["subject"] = f"https://app.example.com/cb?a=1&{param}={secret}&b=2"
    else:
        fields["subject"] = f"https://deploy:{secret}@git.example.com/app.git"
    ev = Event.new(ts=1_764_000_000, source="agent.prop", kind="agent.note", **fields)
    return f"{name}@{where}", ev, secret


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(placed(), min_size=1, max_size=4))
def test_no_embedded_secret_reaches_the_journal(cases: list[tuple[str, Event, str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "journal.sqlite3"
        journal = Journal(path, redact=redact)
        journal.append(Batch("prop", [ev for _, ev, _ in cases]))
        rows = journal.at_stage(0, 100)
        raw = b"".join(p.read_bytes() for p in Path(tmp).glob("journal.sqlite3*"))
        journal.close()
    stored = json.dumps([[e.subject, e.title, e.text, e.attrs] for e in rows])
    for label, _, secret in cases:
        assert secret.encode() not in raw, f"{label}: the secret is in the journal's bytes"
        assert json.dumps(secret)[1:-1] not in stored, f"{label}: the secret was stored"


_odd = st.text(alphabet="abXY09 \n\t'\"=:/_-.@?&İßﬃK", max_size=60)  # İ lowers to 2 chars


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_odd, embedded(), _odd, st.booleans()), min_size=2, max_size=12))
def test_a_batch_is_redacted_as_each_text_alone(parts: list[tuple[str, tuple[str, str, str],
                                                                  str, bool]]) -> None:
    """The journal redacts a batch's fields in one pass (redact_batch): the same result,
    text for text, as redacting each alone, secret or not, whatever characters surround."""
    texts = [pre + (text if with_secret else "") + post
             for pre, (_, text, _), post, with_secret in parts]
    alone = [redact(t) for t in texts]
    _CLEAN.clear()  # the clean-string cache must not decide it
    assert redact_batch(texts) == alone
