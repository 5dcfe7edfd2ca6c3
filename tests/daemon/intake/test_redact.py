from __future__ import annotations

import pytest

from daemon.intake.redact import redact


@pytest.mark.parametrize("text, secret", [
    ("export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMIK7MDENGbPxRfiCY", "wJalrXUtnFEMIK7MDENGbPxRfiCY"),
    ("aws key AKIAIOSFODNN7EXAMPLE in config", "AKIAIOSFODNN7EXAMPLE"),
    ("password: correct-horse-battery", "correct-horse-battery"),
    ("git clone https://bob:pa55w0rd@git.example.com/x.git", "pa55w0rd"),
    ('curl -H "Authorization: Bearer abcdefghijklmnop123"', "abcdefghijklmnop123"),
    ("OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwxyz123", "sk-proj-abcdefghijklmnopqrstuvwxyz123"),
    ("mysql --password=s3cr3t -u root", "s3cr3t"),
    ("mysql -u root -pS3cretPw shop", "S3cretPw"),
    ("mysqldump -h db -u app -p'hunter22' shop > dump.sql", "hunter22"),
    ("sshpass -p hunter22 ssh deploy@host", "hunter22"),
    ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----",
     "b3BlbnNzaC1rZXk"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
     "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
])
def test_secrets_are_redacted(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out
    assert "[REDACTED:" in out


@pytest.mark.parametrize("text", [
    "my token count is high today",
    "reset the password reset flow in auth.py",
    "lead scoring threshold = 42",
    "https://docs.python.org/3/library/sqlite3.html",
    "mkdir -p build/out && ssh -p 2222 host",
    "mysql -u root -p shop",  # -p alone asks for the password: nothing to hide
])
def test_ordinary_text_is_kept(text: str) -> None:
    assert redact(text) == text


SECRETS = {
    "aws.env": ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMIK7MDENGbPxRfiCYzz9", "wJalrXUtnFEMIK7MDENGbPxRfiCYzz9"),
    "deploy.sh": ("git push https://deploy:Tr0ub4dor3x@git.example.com/app.git", "Tr0ub4dor3x"),
    "client.py": ('client = OpenAI(api_key="sk-proj-Zx81abcdefghijklmnopqrstuv")',
                  "sk-proj-Zx81abcdefghijklmnopqrstuv"),
    "notes.md": ("the staging password: lemur-cactus-77", "lemur-cactus-77"),
    "id_ed25519.txt": ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAQUlNB\n"
                       "-----END OPENSSH PRIVATE KEY-----\n", "b3BlbnNzaC1rZXktdjEAAAAQUlNB"),
}


def test_no_secret_reaches_the_journal_or_the_store(make_config, tmp_path) -> None:
    from tests.conftest import run_cli

    root = tmp_path / "src"
    root.mkdir()
    for name, (text, _) in SECRETS.items():
        (root / name).write_text(f"{text}\nordinary words about the quarterly plan\n")
    cfg = make_config([root], pipeline={"summarize": False})
    run_cli(cfg, "ingest", "--once")
    data = tmp_path / "data"
    from daemon.store.lance import Store

    rows = Store(data / "store", 384, "all-minilm-l6-v2").events.to_arrow().to_pylist()
    stored = "\n".join(f"{r['subject']}\n{r['title']}\n{r['text']}\n{r['doc']}" for r in rows)
    journal_bytes = b"".join(p.read_bytes() for p in data.glob("journal.sqlite3*"))
    assert len(rows) == len(SECRETS) and stored.count("quarterly plan") >= len(SECRETS)
    assert b"quarterly plan" in journal_bytes  # both places hold the content...
    for name, (_, secret) in SECRETS.items():  # ...and neither holds a secret
        assert secret not in stored, f"the secret from {name} reached the store"
        assert secret.encode() not in journal_bytes, f"the secret from {name} was journaled"


def test_a_secret_after_another_redacted_one_is_still_found() -> None:
    # each replacement shifts the text: the key=value pass must look at the new offsets
    text = ("deploy notes\nAWS_ACCESS_KEY_ID AKIAZ3MEMORYDTEST777\n"
            "password = hunter2bucketleak\ntoken: 9f8e7d6c5b4a3210\n")
    out = redact(text)
    for secret in ("AKIAZ3MEMORYDTEST777", "hunter2bucketleak", "9f8e7d6c5b4a3210"):
        assert secret not in out, out
    assert out.startswith("deploy notes\n") and out.count("[REDACTED:") == 3


# -- issue 16: the covered formats, attrs, and the key=value regression ---------------------

from tests.daemon.intake.secret_corpus import FORMATS  # noqa: E402


@pytest.mark.parametrize("name", sorted(FORMATS))
@pytest.mark.parametrize("around", ["{}", "see {} now", "a\n{}\nb", '"{}"', "({})"])
def test_every_covered_format_is_redacted(name: str, around: str) -> None:
    import random

    written, secret = FORMATS[name](random.Random(name))
    out = redact(around.format(written))
    assert secret not in out and "[REDACTED:" in out, out


@pytest.mark.parametrize("text, secret", [
    ("api_key=Zx81abcd0123", "Zx81abcd0123"),
    ("access_key=plainpass", "plainpass"),
    ("config.api_key = 'hunter22'", "hunter22"),
    ('{"apiKey": "s3cr3tvalue"}', "s3cr3tvalue"),
    ("X-API-Key: 0a1b2c3d4e5f", "0a1b2c3d4e5f"),
    ("DB_PASS=tortoise", "tortoise"),
])
def test_a_key_naming_a_secret_is_matched_from_its_first_character(text: str,
                                                                   secret: str) -> None:
    # the regression: matching began at the trigger word ("key"), so api_key= never matched
    out = redact(text)
    assert secret not in out and out.startswith(text[:3]), out


@pytest.mark.parametrize("text", [
    "author: Ann Lee", "primary_key=True", "sort_key=lambda r: r.ts", "basic usage of it",
    "bypass = False", "keyboard: us", "https://example.com/search?q=heron&page=2",
    "git log --oneline bed4f5b", "password reset flow", "token = None",
])
def test_near_misses_are_kept(text: str) -> None:
    assert redact(text) == text


def test_attrs_are_redacted_however_nested() -> None:
    from daemon.intake.redact import redact_attrs

    attrs = {"size": 12, "ok": True, "headers": {"Authorization": "Basic ZGVwbG95OnMzY3IzdA==",
                                                 "Accept": "text/html"},
             "argv": ["curl", "-u", "bob:hunter22", "https://x.example/?token=abc123def"],
             "env": {"STRIPE": "sk_live_" + "a1" * 12}, "password": 123456}
    out = redact_attrs(attrs)
    flat = str(out)
    for secret in ("ZGVwbG95OnMzY3IzdA", "abc123def", "a1a1a1a1", "123456"):
        assert secret not in flat, flat
    assert out["size"] == 12 and out["ok"] is True and out["headers"]["Accept"] == "text/html"


def test_unicode_that_changes_length_when_lowered_does_not_shift_spans() -> None:
    text = "İİİ password: hunter2bucket"
    assert redact(text) == "İİİ password: [REDACTED:secret]"


_RANDOM = "q8Zr3LmX0pVt7YwK2sNd9HbF4jGc6uEa1oRiTyQe"  # 40 distinct characters: 5.3 bits/char


@pytest.mark.parametrize("quote", ['"', "'"])
def test_a_quoted_random_string_is_redacted_by_either_quote(quote: str) -> None:
    """The high-entropy rule runs one pattern per quote: both must find it, with no key
    name near it (only its look says it is a secret)."""
    text = f"x = call({quote}{_RANDOM}{quote}, 3)"
    assert redact(text) == f"x = call({quote}[REDACTED:high-entropy]{quote}, 3)"
    plain = f"x = call({quote}{'abcab' * 8}{quote}, 3)"  # long, but 3 distinct characters
    assert redact(plain) == plain


@pytest.mark.parametrize("fields", [
    ["/home/ana/notes.md", "notes.md", f"token = '{_RANDOM}'"],
    [f"https://x.example/cb?token={_RANDOM}", "cb", "nothing here at all"],
    ["/srv/app/.env", f"password: {_RANDOM}", "password: plain words here"],
    ["İİİ password: hunter2bucket", "ghp_abcdefghijklmnopqrstuvwxyz0123456789", "İ key"],
    ["same text with api_key=abcdef123456", "same text with api_key=abcdef123456", "x"],
    ["short", "", "curl -u deploy:s3cr3tpass https://api.example.com"],
])
def test_redacting_an_events_fields_together_equals_one_by_one(fields: list[str]) -> None:
    """The journal redacts subject, title and text with one trigger pass over the three;
    a trigger in one field must run its rules on that field only, and on every field
    that holds it."""
    from daemon.intake.redact import redact_each

    assert redact_each(fields) == [redact(f) for f in fields]
    assert any("[REDACTED:" in r for r in redact_each(fields))


LAZY_REQUESTS = '''
import sys
from daemon.intake.redact import redact
out = redact("token ghp_16C7e42F292c6912E7710c838347Ae178B4a and password = 'hunter2hunter2'")
assert "ghp_" not in out and "hunter2" not in out, out
network = sorted(m for m in sys.modules if m.split(".")[0] in ("urllib3", "charset_normalizer",
                                                               "idna", "certifi"))
assert network == [] and "requests.models" not in sys.modules, network
import requests
assert requests.Session.__name__ == "Session"  # asked for, the package loads whole
print("ok")
'''


def test_redaction_does_not_load_the_http_client_detect_secrets_imports() -> None:
    """detect-secrets' plugins import `requests` for verifying a secret with its service
    (memoryd never does: that would send it away); the daemon loads it only if asked."""
    import subprocess
    import sys
    from pathlib import Path

    out = subprocess.run([sys.executable, "-c", LAZY_REQUESTS], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[3], timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_every_random_twilio_key_is_redacted_even_a_repetitive_one() -> None:
    """A random hex body can look repetitive: at the old 3.5-bit floor 2.2 % of random
    `SK` keys were kept (the property test found this one)."""
    import random

    assert "SKbf5bb33ccbfffb95652f552b0438cc74" not in redact(
        " SKbf5bb33ccbfffb95652f552b0438cc74 ")
    r = random.Random(7)
    keys = ["SK" + "".join(r.choice("0123456789abcdef") for _ in range(32)) for _ in range(2000)]
    kept = [k for k in keys if k in redact(f"the id {k} is set")]
    assert kept == []
