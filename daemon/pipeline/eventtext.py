"""The text a raw event is found by, for the embedder and the full-text index.

A page titled "Overview" at `…/guides/rate-limiting/retry-backoff`, a command
`uv run pytest tests/test_ranker.py::test_tie_break`, a file `crmExport_v2.py`: their
meaning sits in words the title and the raw string hide from a tokenizer (URL path
segments, a program and its arguments, names joined by case or separators). `keys`
spells those words out; `event_doc` puts them right after the title and subject, ahead
of a file's content, so they fall inside the embedder's window (MiniLM reads ~256
tokens). No summary is needed for an event to be found by what it was about.
"""

from __future__ import annotations

import re
import shlex
from typing import Any
from urllib.parse import unquote, urlsplit

from daemon.pipeline.chunking import project_of

_SPLIT = re.compile(r"[/\\._\-+=:,;?&#@~()\[\]{}<>|\"'`\s]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NOISE = re.compile(r"^(?:\d+|[0-9a-f]{7,}|www|com|org|net|io|html?|php|aspx?|https?|index|"
                    r"en|en-us|wiki|u|0)$", re.IGNORECASE)
MAX_KEY_WORDS = 40


def words(text: str) -> list[str]:
    """`text` split on separators and case changes, lower-cased, noise (numbers, hashes,
    `www`, `html`) left out, in order, each once."""
    out: list[str] = []
    for part in _SPLIT.split(text):
        for w in _CAMEL.split(part):
            w = w.lower()
            if len(w) >= 2 and not _NOISE.match(w) and w not in out:
                out.append(w)
    return out


def _url_words(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return words(url)
    host = (parts.hostname or "").removeprefix("www.")
    return words(host.rsplit(".", 1)[0]) + words(unquote(parts.path)) + words(
        unquote(parts.query)) + words(unquote(parts.fragment))


def _command_words(command: str) -> list[str]:
    first = command.strip().split("\n", 1)[0]
    try:
        argv = shlex.split(first)
    except ValueError:
        argv = first.split()
    out: list[str] = []
    for arg in argv[:24]:
        out += _url_words(arg) if arg.startswith(("http://", "https://")) else words(arg)
    return out


def keys(ev: Any) -> str:
    """The words an event means, beyond its raw strings: URL host and path words, a
    command's program and arguments, a file's name and folders, the project."""
    if ev.source == "browser":
        found = _url_words(ev.subject)
    elif ev.source == "shell":
        found = _command_words(ev.subject)
    elif ev.source == "files":
        # the name first, then its folders, nearest first
        found = [w for seg in reversed(ev.subject.split("/")[-5:]) for w in words(seg)]
    else:
        found = words(ev.subject)
    project = project_of(ev)
    found += words(project) if project else []
    seen: list[str] = []
    for w in found:
        if w not in seen:
            seen.append(w)
    return " ".join(seen[:MAX_KEY_WORDS])


def event_doc(ev: Any) -> str:
    """The text an event is found by: its title, subject, key words and content."""
    return "\n".join(p for p in (ev.title, ev.subject, keys(ev), ev.text) if p)
