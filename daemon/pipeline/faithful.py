"""An independent hallucination check: does a written memory name only what its sources say?

Shares no code with the summarizer or `daemon.pipeline.identifiers` on purpose: a check
built from the extractor whose output the summary carries cannot come out lower than
perfect. Every identifier-looking token of a text (URLs, hosts, paths, file names,
numbers with units or decimals, ticket / PR / invoice numbers, versions, branch names,
snake_case and CamelCase names, e-mail addresses, quoted strings, weekdays and months)
must occur in the source text, compared case-insensitively after light normalisation
(trailing punctuation, a `www.`, a trailing slash, thousands separators).

`check` lists the unsupported tokens of a text; `repair` drops the sentences that hold
one (what is left is true to the sources, or empty); `grounded` tells whether a stated
decision or task is said in the sources at all (its content words mostly are).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_URL = r"https?://[^\s<>\"'`)\]}|,]+"
_EMAIL = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
_PATH = r"(?:~|\.{1,2})?/?(?:[\w.@+-]+/)+[\w.@+-]*\w"
_HOST = (r"\b(?:[a-z0-9-]+\.)+(?:com|org|net|io|dev|ai|app|co|de|uk|rs|sh|me|so|gg|xyz|"
         r"info|edu|gov|local|internal)\b")
_FILE = r"\b[\w-]+(?:\.[\w-]+)*\.[a-z][a-z0-9]{0,5}\b"
_TICKET = r"\b[A-Z][A-Z0-9]{1,9}-\d{1,8}\b"
_HASHNUM = r"(?<![\w&])#\d{1,7}\b"
_VERSION = r"\bv?\d+\.\d+(?:\.\d+)+\b|\bv\d+(?:\.\d+)*\b"
_NUMBER = (r"(?<![\w.])[$€£]?\d[\d,]*(?:\.\d+)?\s?(?:%|ms|s|sec|min|h|hrs?|days?|weeks?|"
           r"[kKMG]B|GiB|MiB|tokens?|USD|EUR|k|x)?(?!\w|\.\d)")
_SNAKE = r"\b[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)+\b"
_CAMEL = r"\b[a-z]+[A-Z][A-Za-z0-9]*\b|\b[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]+)+\b"
_BRANCH = r"\b[a-z][\w.-]*/[a-z0-9][\w.-]*\b"
# double quotes and backticks only: an apostrophe ("Python's … Git's") is no quote
_QUOTED = r"[\"“`]([^\"”`\n]{3,60})[\"”`]"
_DAY = (r"\b(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday|January|February|"
        r"March|April|June|July|August|September|October|November|December)\b")
_DATE = r"\b\d{4}-\d{2}-\d{2}\b"
_TIME = r"\b\d{1,2}:\d{2}\b"
_KINDS = [_URL, _EMAIL, _DATE, _TIME, _PATH, _HOST, _FILE, _TICKET, _HASHNUM, _VERSION,
          _SNAKE, _CAMEL, _BRANCH, _DAY]
_TOKEN = re.compile("|".join(f"(?:{k})" for k in _KINDS))
_NUM = re.compile(_NUMBER)
_QUOTE = re.compile(_QUOTED)
_TRAIL = ".,;:!?'\")]}>"
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'`(])")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'-]{3,}")
_STOP = frozenset("""this that with from have will into they them their there were what when
which while about after before also been being does done each more most need needs only over
some such than then these those very work working worked user person file files page pages
command commands ran run running used using make made still left open task tasks decided
decision should must could would""".split())


@dataclass
class Check:
    """The verdict on one text: the tokens its sources do not contain."""

    tokens: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.unsupported


def _norm(token: str) -> str:
    t = token.strip().rstrip(_TRAIL).lower()
    t = re.sub(r"^https?://", "", t).removeprefix("www.").rstrip("/")
    return t


def _num_norm(token: str) -> str:
    return re.sub(r"[\s,$€£]", "", token.strip().rstrip(_TRAIL).lower())


def tokens(text: str) -> list[str]:
    """The identifier-looking tokens of `text`, in order, de-duplicated."""
    found: list[str] = []
    for m in _TOKEN.finditer(text):
        found.append(m.group(0).rstrip(_TRAIL))
    for m in _QUOTE.finditer(text):
        found.append(m.group(1).strip())
    rest = _TOKEN.sub(" ", text)
    for m in _NUM.finditer(rest):
        tok = m.group(0).strip()
        digits = re.sub(r"\D", "", tok)
        # a lone small integer ("2 files", "3 sessions") is a count, not an identifier
        if len(digits) >= 2 or not tok.isdigit():
            found.append(tok)
    out: list[str] = []
    seen: set[str] = set()
    for tok in found:
        key = tok.lower()
        if len(tok) >= 2 and key not in seen:
            seen.add(key)
            out.append(tok)
    return out


class Sources:
    """The text a memory was made from, prepared for many look-ups."""

    def __init__(self, text: str) -> None:
        self.raw = text.lower()
        self.flat = re.sub(r"https?://(www\.)?", "", self.raw)
        self.numbers = {_num_norm(m.group(0)) for m in _NUM.finditer(text)}
        self.words = set(re.findall(r"[a-z0-9]+", self.raw))
        self.stems = {w[:5] for w in self.words if len(w) >= 5}

    def has(self, token: str) -> bool:
        t = _norm(token)
        if not t or t in self.raw or t in self.flat:
            return True
        if _NUM.fullmatch(token.strip()):
            n = _num_norm(token)
            bare = re.sub(r"[^\d.]", "", n).strip(".")
            return n in self.numbers or bare in self.numbers or bare in self.raw
        return False


def check(text: str, sources: Sources | str) -> Check:
    """Which identifier-looking tokens of `text` its sources lack."""
    src = sources if isinstance(sources, Sources) else Sources(sources)
    toks = tokens(text)
    return Check(tokens=toks, unsupported=[t for t in toks if not src.has(t)])


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text.strip()) if s.strip()]


def repair(text: str, sources: Sources | str) -> str:
    """`text` without its sentences that name something the sources do not contain."""
    src = sources if isinstance(sources, Sources) else Sources(sources)
    return " ".join(s for s in sentences(text) if check(s, src).ok)


def grounded(statement: str, sources: Sources | str, share: float = 0.6) -> bool:
    """A stated decision or task is grounded when every identifier in it is in the
    sources and most of its content words are too (a small model's inventions are not)."""
    src = sources if isinstance(sources, Sources) else Sources(sources)
    if not check(statement, src).ok:
        return False
    words = [w.lower() for w in _WORD.findall(statement) if w.lower() not in _STOP]
    if not words:
        return False
    # a word counts when the sources hold it or its first five letters ("deployed" for
    # `deploy`), never as a mere substring of something else
    hits = sum(1 for w in words if w in src.words or (len(w) >= 5 and w[:5] in src.stems))
    return hits / len(words) >= share


def repeated(text: str) -> list[str]:
    """The sentences `text` says more than once (ignoring case and spacing)."""
    seen: set[str] = set()
    twice: list[str] = []
    for s in sentences(text):
        key = " ".join(s.lower().split())
        if key in seen and s not in twice:
            twice.append(s)
        seen.add(key)
    return twice
