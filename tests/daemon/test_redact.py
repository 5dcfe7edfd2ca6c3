from __future__ import annotations

import pytest

from daemon.redact import redact


@pytest.mark.parametrize("text, secret", [
    ("export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMIK7MDENGbPxRfiCY", "wJalrXUtnFEMIK7MDENGbPxRfiCY"),
    ("aws key AKIAIOSFODNN7EXAMPLE in config", "AKIAIOSFODNN7EXAMPLE"),
    ("password: correct-horse-battery", "correct-horse-battery"),
    ("git clone https://bob:pa55w0rd@git.example.com/x.git", "pa55w0rd"),
    ('curl -H "Authorization: Bearer abcdefghijklmnop123"', "abcdefghijklmnop123"),
    ("OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwxyz123", "sk-proj-abcdefghijklmnopqrstuvwxyz123"),
    ("mysql --password=s3cr3t -u root", "s3cr3t"),
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
])
def test_ordinary_text_is_kept(text: str) -> None:
    assert redact(text) == text
