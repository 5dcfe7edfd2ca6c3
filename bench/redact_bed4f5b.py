"""The redaction of commit bed4f5b (before issue 16), kept as the benchmark's baseline.

Secret redaction, applied before anything is written to the journal or the store.

Given text, `redact` returns it with credentials replaced by `[REDACTED:<kind>]`. The
patterns favour catching a secret over keeping a harmless string that looks like one.
"""

from __future__ import annotations

import re

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("private-key", re.compile(
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
        re.S)),
    ("aws-access-key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("github-token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})\b")),
    ("api-key", re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}\b")),
    ("slack-token", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b")),
    ("google-api-key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    ("url-credentials", re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)")),
    ("bearer", re.compile(r"(?i)(?<=\bbearer )[A-Za-z0-9._~+/=-]{12,}")),
    # key=value and key: value where the key names a secret (passwords, tokens, ...); the
    # match starts at the telling word, so "AWS_SECRET_ACCESS_KEY=" keeps "AWS_" before it
    ("secret", re.compile(
        r"(?i)((?:password|passwd|pwd|secret|token|api[_-]?key"
        r"|access[_-]?key|auth|credential)s?[A-Za-z0-9_]*)"
        r"(\s*[:=]\s*|\s+)(['\"]?)([^\s'\"&;,]{4,})\3")),
    # command-line flags: --password X, --token=X
    ("secret-flag", re.compile(
        r"(?i)(--(?:password|passwd|token|secret|api-key)[= ])(['\"]?)([^\s'\"]+)\2")),
    # -pSECRET as mysql-family clients take it, and sshpass -p SECRET; a generic "-p"
    # is left alone (mkdir -p, ssh -p 22)
    ("password-flag", re.compile(
        r"(?i)(\b(?:mysql|mariadb|mysqldump|mysqladmin|mariadb-dump)\b[^\n|;&]*?\s-p"
        r"|\bsshpass\s+-p\s*)(['\"]?)(?P<value>[^\s'\"]+)\2")),
]


# A pattern runs only when one of its cheap trigger substrings (lower-cased) is present:
# most text holds no secret, and substring tests cost a fraction of the regexes.
_TRIGGERS: dict[str, tuple[str, ...]] = {
    "private-key": ("private key-----",),
    "aws-access-key": ("akia", "asia"),
    "github-token": ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    "api-key": ("sk-",),
    "slack-token": ("xox",),
    "google-api-key": ("aiza",),
    "jwt": ("eyj",),
    "url-credentials": ("@",),
    "bearer": ("bearer ",),
    "secret": ("pass", "pwd", "secret", "token", "key", "auth", "credential"),
    "secret-flag": ("--pass", "--token", "--secret", "--api-key"),
    "password-flag": ("mysql", "mariadb", "sshpass"),
}


def redact(text: str) -> str:
    if not text:
        return text
    lower = text.lower()
    for kind, pattern in _PATTERNS:
        if not any(t in lower for t in _TRIGGERS[kind]):
            continue
        before = text
        if kind == "secret":
            text = _secret_values(text, lower, pattern)
        elif kind == "secret-flag":
            text = pattern.sub(_flag, text)
        elif kind == "password-flag":
            text = pattern.sub(_password_flag, text)
        else:
            text = pattern.sub(f"[REDACTED:{kind}]", text)
        if text is not before and text != before:
            # a replacement moved every later position: `secret` looks its keys up in
            # `lower` by offset, so a stale copy made it miss (an AWS key redacted above
            # a "password = ..." line left the password in clear)
            lower = text.lower()
    return text


def _secret_values(text: str, lower: str, pattern: re.Pattern[str]) -> str:
    """Apply the key=value pattern only where a secret-naming word starts: an
    IGNORECASE alternation cannot use a fast literal scan, str.find can."""
    matches: list[re.Match[str]] = []
    for word in _TRIGGERS["secret"]:
        i = lower.find(word)
        while i != -1:
            m = pattern.match(text, i)
            if m:
                matches.append(m)
            i = lower.find(word, i + 1)
    if not matches:
        return text
    out: list[str] = []
    end = 0
    for m in sorted(matches, key=lambda m: (m.start(), -m.end())):
        if m.start() < end:
            continue  # overlaps a match already taken ("api_key" and "key")
        out.append(text[end:m.start()])
        out.append(_keep_key(m))
        end = m.end()
    out.append(text[end:])
    return "".join(out)


def _password_flag(m: re.Match[str]) -> str:
    start, end = m.span("value")
    whole = m.group(0)
    return whole[:start - m.start()] + "[REDACTED:password-flag]" + whole[end - m.start():]


def _flag(m: re.Match[str]) -> str:
    return f"{m.group(1)}[REDACTED:secret-flag]"


def _keep_key(m: re.Match[str], kind: str = "secret") -> str:
    value = m.group(4)
    if value.startswith("[REDACTED") or value.lower() in ("bearer", "basic", "token"):
        return m.group(0)
    # "token count" or "password reset" in prose is not a secret: require = or : unless
    # the value looks like a credential (long, mixed letters and digits).
    sep = m.group(2)
    if not sep.strip() and not _looks_secret(value):
        return m.group(0)
    return f"{m.group(1)}{sep}{m.group(3)}[REDACTED:{kind}]{m.group(3)}"


def _looks_secret(value: str) -> bool:
    return (len(value) >= 12 and any(c.isdigit() for c in value)
            and any(c.isalpha() for c in value))
