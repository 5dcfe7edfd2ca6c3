"""Secret redaction, applied before anything is written to the journal or the store.

Given text, `redact` returns it with credentials replaced by `[REDACTED:<kind>]`;
`redact_attrs` does the same through an event's attrs, however nested. The rules come
from three places (daemon/intake/secrets/): detect-secrets' plugins, token formats by
prefix (gitleaks' rule set as the reference), and secrets known by where they stand
(`key = value`, `Authorization:`, `curl -u`, `docker login -p`, URLs' userinfo and
credential-bearing query parameters, private key blocks). They favour catching a secret
over keeping a harmless string that looks like one.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache
from typing import Any

from daemon.intake.secrets.rules import RuleSet, Span, merge

SHORTEST = 8  # no secret fits in fewer characters with what tells it apart ("pw=abc12")


@cache
def rules() -> RuleSet:
    """Every rule, built on the first redaction (detect-secrets is imported then)."""
    from daemon.intake.secrets.context import context_rules
    from daemon.intake.secrets.detectors import detector_rules
    from daemon.intake.secrets.formats import PRIVATE_KEY, PUTTY_KEY, format_rules

    return RuleSet((PRIVATE_KEY, PUTTY_KEY, *format_rules(), *context_rules(),
                    *detector_rules()))


def find(text: str) -> list[Span]:
    """The merged spans of every secret in `text`."""
    return merge(rules().spans(text))


# Short strings known to hold no secret: paths, roots, titles and attrs values repeat
# across events (every save of a file, every event of a root). Only clean strings are
# kept, so no secret lingers here; the set is emptied when full.
_CLEAN: set[str] = set()
_CLEAN_MAX, _CLEAN_LEN = 8192, 256


def redact(text: str) -> str:
    if len(text) < SHORTEST or text in _CLEAN:
        return text
    return _replaced(text, merge(rules().spans(text)))


def redact_each(texts: list[str]) -> list[str]:
    """`[redact(t) for t in texts]`, with one trigger pass over the texts that need one
    (an event's subject, title and text)."""
    todo = [i for i, t in enumerate(texts) if len(t) >= SHORTEST and t not in _CLEAN]
    if len(todo) < 2:
        return [redact(t) for t in texts]
    out = list(texts)
    found = rules().spans_each([texts[i] for i in todo])
    for i, spans in zip(todo, found, strict=True):
        out[i] = _replaced(texts[i], merge(spans))
    return out


def redact_batch(texts: list[str]) -> list[str]:
    """`[redact(t) for t in texts]` for many texts at once (a batch of events' subjects,
    titles and texts): one trigger pass over them all, and no call for a text that names
    no trigger (bench/README.md, Journal ingest)."""
    out = list(texts)
    for i, spans in rules().spans_batch(texts).items():
        text = texts[i]
        if len(text) >= SHORTEST and text not in _CLEAN:  # what redact() would leave
            out[i] = _replaced(text, merge(spans))
    return out


def _replaced(text: str, spans: list[Span]) -> str:
    if not spans:
        if len(text) <= _CLEAN_LEN:
            if len(_CLEAN) >= _CLEAN_MAX:
                _CLEAN.clear()
            _CLEAN.add(text)
        return text
    out: list[str] = []
    end = 0
    for s, e, kind in spans:
        out.append(text[end:s])
        out.append(f"[REDACTED:{kind}]")
        end = e
    out.append(text[end:])
    return "".join(out)


# attrs whose key says the whole value is a credential, whatever it looks like
_SECRET_KEY = re.compile(
    r"(?i)(?:^|[_.-])(?:password|passwd|passphrase|pwd|secret|token|api[_-]?key|apikey"
    r"|access[_-]?key|private[_-]?key|client[_-]?secret|authorization|cookie|set-cookie"
    r"|credentials?|session[_-]?id)(?:$|[_.-])|^(?:x-)?(?:api|auth)[_-]?(?:key|token)$")


_KEY_WORDS = ("pass", "pwd", "secret", "token", "key", "auth", "cookie", "cred", "session")


@lru_cache(maxsize=4096)  # attrs keys repeat: "size", "root", "headers", ...
def _secret_key(key: str) -> bool:
    lower = key.lower()
    return any(w in lower for w in _KEY_WORDS) and _SECRET_KEY.search(key) is not None


_SCALAR, _NESTED = (str, int, float), (dict, list, tuple)


def redact_attrs(value: Any, text: Any = redact) -> Any:
    """`value` (an event's attrs) with every string passed through `text` (redact), and
    the whole value of a key that names a credential ("password", "Authorization",
    "api_key", "Cookie", ...) replaced."""
    if isinstance(value, str):
        return text(value)
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            key = k
            if isinstance(k, str):
                if len(k) > 16:
                    key = text(k)
                if _secret_key(k) and isinstance(v, _SCALAR) and v != "" \
                        and not isinstance(v, bool):
                    out[key] = "[REDACTED:secret]"
                    continue
            if isinstance(v, str):
                out[key] = text(v)
            elif isinstance(v, _NESTED):
                out[key] = redact_attrs(v, text)
            else:
                out[key] = v
        return out
    if isinstance(value, (list, tuple)):
        return [redact_attrs(v, text) for v in value]
    return value
