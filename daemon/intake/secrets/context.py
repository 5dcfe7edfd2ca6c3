"""Secrets known by where they stand rather than by their shape: the value of a key that
names a secret, an `Authorization` header, a password on a command line, a URL's userinfo
and its credential-bearing query parameters."""

from __future__ import annotations

import re

from ahocorasick_rs import AhoCorasick, Implementation

from daemon.intake.secrets.rules import Rule, regex_finder, regex_rule

# -- key = value ------------------------------------------------------------------------

# Words that make any key a secret's name, and weaker ones ("key", "auth") that do only when
# the value also looks like a credential ("primary_key=True", "author: Ann" stay).
_STRONG = ("password", "passwd", "passphrase", "pwd", "secret", "token", "credential",
           "apikey", "api_key", "api-key", "access_key", "accesskey", "access-key",
           "private_key", "privatekey", "auth_key", "authkey", "client_secret")
_WEAK = ("key", "auth", "sig", "cred", "pass")
_STRONG_IN = re.compile("|".join(map(re.escape, _STRONG)))
_WEAK_IN = re.compile("|".join(map(re.escape, _WEAK)))
_PASS = re.compile(r"(?:.*[_.-])?pass(?:[_.-].*)?")  # PASS, DB_PASS, pass_word; not "bypass"
_IDENT = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")
_ASSIGN = re.compile(
    r"""[\w.-]*["']?\]?[ \t]*(?P<sep>:=|=>|==?|:|[ \t])[ \t]*"""
    r"""(?:(?P<q>["'`])(?P<quoted>[^"'`\n]{1,400}?)(?P=q)|(?P<bare>[^\s"'`,;&)]{3,}))""")
_PLACEHOLDERS = ("none", "null", "true", "false", "undefined", "required", "optional",
                 "xxx", "***", "changeme", "example")


def key_values(text: str) -> tuple[list[tuple[int, int]], set[tuple[int, int]]]:
    """Spans of values after `key=`, `key: `, `"key": "v"`, `KEY v` where the key holds a
    secret-naming word, and the lines (start, end) where such an assignment was kept
    though its key or value says "secret" (for a second opinion).

    The key is found from its word outwards (str.find is fast, an IGNORECASE alternation
    scan is not) and matched from its first character, so `api_key=` and
    `AWS_SECRET_ACCESS_KEY=` are whole keys, never a tail of one."""
    lower = same_length_lower(text)
    starts: set[int] = set()
    # every occurrence of every word (every strong word holds one of them), in one pass
    for _, i, _ in _key_words(lower, overlapping=True):
        # an assignment must follow the word's identifier (cheap, in C) before the
        # identifier's start is looked for (a loop in Python)
        if _ASSIGN.match(text, i) is not None:
            start = i
            while start > 0 and lower[start - 1] in _IDENT:
                start -= 1
            starts.add(start)
    spans: list[tuple[int, int]] = []
    lines: set[tuple[int, int]] = set()
    for start in sorted(starts):
        m = _ASSIGN.match(text, start)
        if m is None:
            continue
        key = lower[start:m.start("sep")]
        strong = _STRONG_IN.search(key) is not None or _PASS.fullmatch(key) is not None
        if not strong and _WEAK_IN.search(key) is None:
            continue
        group = "quoted" if m.group("quoted") is not None else "bare"
        value = m.group(group)
        if not _keep(value, strong, m.group("sep")):
            spans.append(m.span(group))
        elif strong or looks_secret(value):
            # kept, though the key or the value says "secret": a line for the second
            # opinion (detect-secrets' keyword patterns, which are costly to run)
            end = text.find("\n", start)
            lines.add((text.rfind("\n", 0, start) + 1, len(text) if end == -1 else end))
    return spans, lines


def same_length_lower(text: str) -> str:
    """`text.lower()` with every offset kept: "İ".lower() is two characters, and offsets
    found in the lowered text index the original."""
    lower = text.lower()
    if len(lower) == len(text):
        return lower
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


def _keep(value: str, strong: bool, sep: str) -> bool:
    v = value.strip().lower()
    if len(v) < 3 or v.startswith(("$", "<", "{", "[redacted", "%", "os.environ", "getenv",
                                   "self.", "env.", "process.env")):
        return True
    if v in _PLACEHOLDERS or v in ("bearer", "basic", "token", "digest"):
        return True
    if sep.strip() in ("", "=="):  # "token count", "password reset", "x == token"
        return not looks_secret(value)
    return not strong and not looks_secret(value)


def looks_secret(value: str) -> bool:
    """Long, with letters and digits (or symbols): how generated credentials look."""
    if len(value) < 8:
        return False
    letters = sum(c.isalpha() for c in value)
    others = len(value) - letters
    return letters > 0 and others > 0 and not value.replace(".", "").isdigit()


KEY_TRIGGERS = ("pass", "pwd", "secret", "token", "cred", "key", "auth", "sig")
# one automaton call finds them all (8 str.find loops cost ~8 us per 300 characters)
_key_words = AhoCorasick(KEY_TRIGGERS, implementation=Implementation.DFA).find_matches_as_indexes

# -- headers -----------------------------------------------------------------------------

def _credential_like(m: re.Match[str]) -> bool:
    """After "Authorization:" anything is; after a bare "Bearer"/"Basic" in prose only
    what has a digit, a symbol or an inner capital ("basic usage" stays)."""
    if m.group("header"):
        return True
    v = m.group("secret")
    return (any(c.isdigit() or c in "=+/._-~" for c in v)
            or any(c.isupper() for c in v[1:]))


AUTH_HEADER = Rule("auth-header", ("authoriz", "bearer", "basic "), regex_finder(re.compile(
    r"(?i)(?:(?P<header>\bauthori[sz]ation\b[\"']?\s*[:=]\s*[\"']?\s*)"
    r"(?:basic|bearer|token|digest|negotiate|apikey|otp|sso-key)?\s*"
    r"|\b(?:bearer|basic)\s+)(?P<secret>[A-Za-z0-9._~+/=:-]{8,})"), "secret", _credential_like))

# -- command lines -----------------------------------------------------------------------

_CMD = r"[^\n|;&]*?"
FLAGS = (
    # --password X, --password=X, --token X, --api-key=X, --http-password=X
    regex_rule("secret-flag", ("--",),
               r"(?i)(?<![\w-])--[\w-]*(?:password|passwd|token|secret|api-key|apikey)"
               r"(?:[= ]|\s+)(?P<q>['\"]?)(?P<secret>[^\s'\"]+)(?P=q)", group="secret"),
    # curl -u user:pw, --user user:pw, -uuser:pw
    regex_rule("curl-user", ("curl",),
               r"(?i)\bcurl\b" + _CMD + r"(?:\s-u\s*|\s--user[= ]\s*|\s-[a-zA-Z]*u\s+)"
               r"(?P<q>['\"]?)[^\s:'\"]*:(?P<secret>[^\s'\"]+)(?P=q)", group="secret"),
    # docker/podman/helm/nerdctl login -p X (registry passwords)
    regex_rule("login-password", ("login",),
               r"(?i)\b(?:docker|podman|nerdctl|helm|oras|buildah|skopeo|crane)\b" + _CMD +
               r"\blogin\b" + _CMD + r"\s-p[= ]?\s*(?P<q>['\"]?)(?P<secret>[^\s'\"]+)(?P=q)",
               group="secret"),
    # twine upload -p X
    regex_rule("twine-password", ("twine",),
               r"(?i)\btwine\b" + _CMD + r"\s-p[= ]?\s*(?P<q>['\"]?)(?P<secret>[^\s'\"]+)(?P=q)",
               group="secret"),
    # mysql-family -pSECRET, sshpass -p SECRET, redis-cli -a SECRET; a bare -p is kept
    regex_rule("password-flag", ("mysql", "mariadb", "sshpass", "redis-cli"),
               r"(?i)(?:\b(?:mysql|mariadb|mysqldump|mysqladmin|mariadb-dump)\b" + _CMD +
               r"\s-p|\bsshpass\s+-p\s*|\bredis-cli\b" + _CMD + r"\s-a\s+)"
               r"(?P<q>['\"]?)(?P<secret>[^\s'\"]+)(?P=q)", group="secret"),
)

# -- URLs --------------------------------------------------------------------------------

# scheme://user:password@host (databases, caches, queues, git remotes, proxies). Pasted
# passwords are often not percent-encoded: one may hold "@" (taken to the last "@" before
# the path) or "/" (taken to the first "@"); both readings are redacted.
_USERINFO_AT = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s/:@?#]*:(?P<secret>[^\s/?#]+)@")
_USERINFO_SLASH = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s/:@?#]*:(?P<secret>[^\s@]+)@")
_PORT = re.compile(r"\d{1,5}(?:[/?#]|$)")


def _userinfo(text: str) -> list[tuple[int, int]]:
    out = [m.span("secret") for m in _USERINFO_AT.finditer(text)]
    out += [m.span("secret") for m in _USERINFO_SLASH.finditer(text)
            if not _PORT.match(m.group("secret"))]  # host:8080/path?mail=a@b is no password
    return out


URL_USERINFO = Rule("url-credentials", ("://",), _userinfo)

_QUERY_KEYS = (r"(?:[\w.-]*(?:token|secret|passw|pwd|api[_-]?key|apikey|signature|credential"
               r"|session|auth)[\w.-]*|code|key|sig|sid|jwt|otp|ticket|hash)")
_QUERY = regex_finder(re.compile(
    r"(?i)[?&#;]" + _QUERY_KEYS + r"=(?P<secret>[^&#\s\"'<>]{3,})"), "secret")
# triggers: the parameter names _QUERY_KEYS can match, with their "=" where they are short
URL_QUERY = Rule("url-credentials", ("token", "secret", "passw", "pwd", "key", "signature",
                                     "credential", "session", "auth", "code=", "sig=",
                                     "sid=", "jwt=", "otp=", "ticket=", "hash="),
                 lambda text: _QUERY(text) if "=" in text else ())


def context_rules() -> tuple[Rule, ...]:
    return (AUTH_HEADER, *FLAGS, URL_USERINFO, URL_QUERY)
