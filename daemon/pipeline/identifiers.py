"""Identifiers taken from events without a model: paths, URLs, tickets, branches, commands.

A small model paraphrases and drops details ("edited the scoring module" instead of
`~/src/lead-scoring/model/features.py`). The harness extracts the identifiers from the
events deterministically, checks the model's memory against them, and puts back what the
model lost (`missing`, `restore`). Only what the events contain counts: file paths, the
URLs visited, shell commands and the paths, URLs, ticket numbers and git branches inside
them, ticket numbers in page titles. File *contents* give their key lines (`facts_of`),
their TODO/FIXME lines as open tasks, and the names, numbers and quoted phrases they
hold (`mentions_of`, a bounded list the memory keeps verbatim).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from typing import Any

URL = re.compile(r"https?://[^\s<>\"'`)\]}|]+")
JIRA = re.compile(r"\b[A-Z][A-Z0-9]{1,9}-\d{1,6}\b")
HASH_REF = re.compile(r"(?<![\w&/])#\d{1,6}\b")
PR_REF = re.compile(r"\b(?:PR|MR|pull request)\s*#?\s*(\d{1,6})\b", re.IGNORECASE)
PATHLIKE = re.compile(r"(?:~|\.{1,2})?/?(?:[\w.@+-]+/)+[\w.@+-]*[\w@+-]")
FILENAME = re.compile(
    r"\b[\w.-]+\.(?:py|md|rst|txt|toml|ya?ml|json|ini|cfg|sh|js|ts|tsx|jsx|css|html|sql|go|rs"
    r"|java|kt|c|h|cc|cpp|hpp|rb|php|ipynb|csv|lock|tf|proto)\b")
DATE = re.compile(r"\b20\d\d-[01]\d-[0-3]\d\b")
TODO = re.compile(r"\b(?:TODO|FIXME|XXX)\b(?:\(([^)\n]{1,40})\))?[:\s-]*(.{4,160})")
GIT_BRANCH = re.compile(
    r"\bgit\s+(?:checkout\s+(?:-[bB]\s+)?|switch\s+(?:-[cC]\s+)?|push\s+(?:-u\s+)?\S+\s+"
    r"|merge\s+|rebase\s+|branch\s+(?:-[dDmM]\s+)?)([\w./-]+)")
TRIVIAL = {"ls", "ll", "la", "cd", "pwd", "clear", "exit", "history", "fg", "bg", "jobs",
           "top", "htop", "whoami", "date", "true", "false", ":", "cd ..", "cd -", "ls -la",
           "ls -l", "ls -al", "git status", "git diff", "git log", "vim", "nvim", "nano"}
MAX_COMMAND_CHARS = 200
TRAILING = ".,;:!?'\")]}>"


def _clean(token: str) -> str:
    return token.rstrip(TRAILING)


def _add(out: list[str], seen: set[str], item: str) -> None:
    item = item.strip()
    if len(item) >= 3 and item.lower() not in seen:
        seen.add(item.lower())
        out.append(item)


def from_text(text: str) -> list[str]:
    """Return the URLs, tickets, paths and file names named in a short text (a command,
    a page title), in order of appearance."""
    out: list[str] = []
    seen: set[str] = set()
    urls = [_clean(u) for u in URL.findall(text)]
    for u in urls:
        _add(out, seen, u)
    rest = URL.sub(" ", text)
    for m in JIRA.finditer(rest):
        _add(out, seen, m.group(0))
    for m in PR_REF.finditer(rest):
        _add(out, seen, f"#{m.group(1)}")
    for m in HASH_REF.finditer(rest):
        _add(out, seen, m.group(0))
    for m in GIT_BRANCH.finditer(rest):
        branch = _clean(m.group(1))
        if not branch.startswith("-") and branch not in {".", "..", "HEAD"}:
            _add(out, seen, branch)
    for m in PATHLIKE.finditer(rest):
        token = _clean(m.group(0))
        if "/" in token.strip("/") or token.startswith(("/", "~/", "./", "../")):
            _add(out, seen, token)
    for m in FILENAME.finditer(rest):
        _add(out, seen, m.group(0))
    return out


def command_identifier(command: str) -> str | None:
    """The command itself when it says more than a bare `ls`: its first line, trimmed."""
    first = " ".join(command.strip().split("\n", 1)[0].split())
    if not first or first in TRIVIAL or len(first) < 4:
        return None
    try:
        words = shlex.split(first)
    except ValueError:
        words = first.split()
    if len(words) == 1 and words[0] in TRIVIAL:
        return None
    return first[:MAX_COMMAND_CHARS]


def of_event(ev: Any) -> list[str]:
    """Given an Event, return its identifiers (most specific first)."""
    out: list[str] = []
    seen: set[str] = set()
    if ev.source == "files":
        _add(out, seen, ev.subject)
    elif ev.source == "browser":
        _add(out, seen, ev.subject)
        for item in from_text(ev.title or ""):
            _add(out, seen, item)
    elif ev.source == "shell":
        cmd = command_identifier(ev.subject)
        if cmd:
            _add(out, seen, cmd)
            for item in from_text(cmd):
                _add(out, seen, item)
    else:
        for item in from_text(f"{ev.subject}\n{ev.title}"):
            _add(out, seen, item)
    return out


def of_events(events: Iterable[Any]) -> list[str]:
    """The identifiers of all `events`, de-duplicated, in order of first appearance."""
    out: list[str] = []
    seen: set[str] = set()
    for ev in events:
        for item in of_event(ev):
            _add(out, seen, item)
    return out


def dates_of(events: Iterable[Any]) -> list[str]:
    """The days the events happened on and the ISO dates their titles and commands name."""
    found: set[str] = set()
    for ev in events:
        found.add(ev.ts.date().isoformat())
        found.update(DATE.findall(f"{ev.subject}\n{ev.title}"))
    return sorted(found)


def todos_of(events: Iterable[Any], limit: int = 6) -> list[str]:
    """TODO/FIXME lines in the saved files' text: the user's own list of open tasks."""
    out: list[str] = []
    seen: set[str] = set()
    for ev in events:
        if ev.source != "files" or not ev.text:
            continue
        for m in TODO.finditer(ev.text):
            task = m.group(2).strip().rstrip("*/#-> ").strip()
            task = f"{m.group(1)}: {task}" if m.group(1) else task
            if task and len(out) < limit:
                _add(out, seen, task)
        for m in CHECKBOX.finditer(ev.text):  # a markdown to-do list's unticked boxes
            if m.group(1) == " " and len(out) < limit:
                _add(out, seen, m.group(2).strip())
        for m in TASK_LINE.finditer(ev.text):
            if len(out) < limit:
                _add(out, seen, " ".join((m.group(1) or m.group(2)).split()))
    return out


CHECKBOX = re.compile(r"^\s*[-*]\s*\[( |x|X)\]\s+(.{4,200})$", re.MULTILINE)
# a line that states a choice: "Decision: …", "go with 0.82", "… <- using this one", a
# remedy chosen ("Fix: …"), a rule set for later ("no new hire before the contract is
# signed"), a value changed ("€3,900 fixed (was €2,900 …)")
DECISION = re.compile(
    r"^.*(?:\b(?:decision|fix|resolution|solution|policy)\s*:|\b(?:decided|go(?:ing)? with|"
    r"settled on|agreed|chose|chosen|using this one|we'll use|will use|switch(?:ed)? to|"
    r"from now on|instead of)\b|\bno\s+[\w -]{3,40}?\b(?:before|until|unless)\b|"
    r"\((?:was|up from|down from|previously)\s).*$",
    re.IGNORECASE | re.MULTILINE)
# a line that states what is left: "Open: …", "next: …", "X needs … by …"
TASK_LINE = re.compile(r"^\W*(?:open|next|to ?do|follow[- ]up|pending)\s*:\s*(.{4,200})$"
                       r"|^\W*(.{0,80}\bneeds?\b.{3,120}\bby\b.{3,60})$",
                       re.IGNORECASE | re.MULTILINE)
PLACEHOLDER = re.compile(r"^(?:what (?:was|is|were) .*|none|n/?a|tbd|nothing|unknown|no \w+)"
                         r"[.?!]?$", re.IGNORECASE)
EVENT_KIND = re.compile(r"^[a-z_]+\.[a-z_]+$")
CONSTANT = re.compile(r"^([A-Z][A-Z0-9_]{2,})\s*[:=]\s*(.{1,100})$")
PROSE_SUFFIXES = (".md", ".txt", ".rst", ".yaml", ".yml", ".toml", ".env", ".ini", ".cfg",
                  ".csv", ".org", ".conf")
FACT_HINT = re.compile(r"\d|\b[A-Z]{2,}-\d|\b(?:decid|decision|go with|chose|settled|ask|"
                       r"call|need|wants?|must|deadline|due|blocked|because)\w*", re.IGNORECASE)
DOCSTRING_QUOTES = ('"""', "'''")
FACTS_PER_FILE = 6
FACTS_MAX = 16


def placeholder(item: str) -> bool:
    """An item that says nothing: an echoed instruction ("What was decided?"), "none",
    an event kind (`browser.visit`), a bare URL, a question."""
    item = item.strip()
    return (len(item) < 4 or bool(PLACEHOLDER.match(item)) or bool(EVENT_KIND.match(item))
            or bool(URL.fullmatch(item)) or item.endswith("?"))


def _file_facts(ev: Any) -> list[str]:
    lines = [ln.strip() for ln in ev.text.splitlines() if ln.strip()]
    name = ev.subject.rsplit("/", 1)[-1]
    if name.lower().endswith(PROSE_SUFFIXES) or "." not in name:
        picked = [ln.lstrip("-*#> ").strip() for ln in lines if FACT_HINT.search(ln)
                  and not ln.startswith("|---") and len(ln) <= 200]
    else:  # source code: its docstring's first line and its named constants
        doc = next((ln.strip("\"' ") for ln in lines[:3] if ln.startswith(DOCSTRING_QUOTES)), "")
        picked = ([doc] if len(doc) > 8 else []) + [
            ln for ln in lines if CONSTANT.match(ln) and not ln.endswith(("(", "[", "{"))]
    return [p[:200] for p in picked if len(p) >= 4][:FACTS_PER_FILE]


def facts_of(events: Iterable[Any]) -> list[str]:
    """The key lines of the saved files, verbatim: in notes and configs the lines with a
    number, a ticket or a decision word; in code the docstring and named constants. A
    model drops these (a value, an invoice number, who to call on Monday); they are what
    a question about the file asks for."""
    out: list[str] = []
    seen: set[str] = set()
    for ev in events:
        if ev.source == "files" and ev.text:
            for fact in _file_facts(ev):
                if len(out) < FACTS_MAX:
                    _add(out, seen, " ".join(fact.split()))
    return out


def decisions_of(events: Iterable[Any], limit: int = 6) -> list[str]:
    """Decisions the saved files state: "Decision: …", "Going with …", "Fix: …", ticked
    boxes (a choice made and carried out)."""
    out: list[str] = []
    seen: set[str] = set()
    for ev in events:
        if ev.source != "files" or not ev.text:
            continue
        for m in DECISION.finditer(ev.text):
            line = " ".join(m.group(0).split()).lstrip("-*#> ").strip()
            if 6 <= len(line) <= 200 and not line.startswith(("|", "[ ]", "[x]", "[X]")):
                _add(out, seen, line)
        for m in CHECKBOX.finditer(ev.text):
            if m.group(1).lower() == "x":
                _add(out, seen, m.group(2).strip())
    return out[:limit]


CUE = re.compile(r"\b(?:decision|decided|decide|go(?:ing)? with|settled|agreed|chose|chosen|"
                 r"using this|will|should|must|need(?:s|ed)? to|todo|fixme|next|open|plan|"
                 r"pending|follow[- ]up|ask|remember)\b|\[[ xX]\]", re.IGNORECASE)


def cue_lines(events: Iterable[Any]) -> list[str]:
    """The lines of the events' text and commands that state a choice or a task ("will",
    "should", "decided", "TODO", a checkbox): where a decision or task the model names
    must be found, if it is stated at all."""
    out: list[str] = []
    for ev in events:
        for line in f"{ev.subject}\n{ev.text}".splitlines():
            if CUE.search(line):
                out.append(line.strip())
    return out


def present(item: str, text: str) -> bool:
    return item.lower() in text.lower()


def missing(identifiers: Iterable[str], text: str) -> list[str]:
    """The identifiers that `text` does not contain (case-insensitive, verbatim)."""
    low = text.lower()
    return [i for i in identifiers if i.lower() not in low]


def preserved_share(identifiers: list[str], text: str) -> float:
    """The share of `identifiers` found verbatim in `text` (1.0 when there are none)."""
    if not identifiers:
        return 1.0
    return 1.0 - len(missing(identifiers, text)) / len(identifiers)


def merge(*lists: Iterable[str], limit: int | None = None) -> list[str]:
    """Union of string lists, case-insensitively de-duplicated, order kept."""
    out: list[str] = []
    seen: set[str] = set()
    for items in lists:
        for item in items:
            if isinstance(item, str):
                _add(out, seen, item)
    return out[:limit] if limit is not None else out


# -- what the saved files name -------------------------------------------------------------

_EDGES = ":!?*"
# what separates names in code and prose; no quote survives in a name, so a list of them
# joined by commas never reads as a quoted phrase
_APART = re.compile(r"(?:[\s\"'“”`()\[\]{}<>;=]|,(?!\d))+")  # "€3,900" stays whole
_SHAPED = re.compile(r"\d|_|[a-z][A-Z]|\w[./@-]\w|^--?\w|^[$€£]")
_CALENDAR = re.compile(
    r"\b(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday|January|February|March|"
    r"April|May|June|July|August|September|October|November|December)\b")
_PHRASE = re.compile(r"[\"“`]([^\"”`\n]{3,60})[\"”`]")
MENTIONS_MAX = 80  # a memory lists at most this many names of its files


def _shaped(text: str) -> Iterable[str]:
    """The words of `text` that look like identifiers (a digit, an underscore, an inner
    capital, a dot, slash, @ or hyphen between letters, a flag, an amount), with the
    quoted phrases and the weekdays and months it names."""
    for m in _PHRASE.finditer(text):
        yield m.group(1).strip()
    for word in _APART.split(text):  # "ap.add_argument(\"--since\"" names two things
        word = word.strip(_EDGES).rstrip(".")
        if len(word) >= 2 and _SHAPED.search(word):
            yield word
    yield from _CALENDAR.findall(text)


def mentions_of(events: Iterable[Any], limit: int = MENTIONS_MAX) -> list[str]:
    """The names, numbers, versions, hosts, flags and quoted phrases the saved files'
    contents hold, in order, at most `limit`: the memory keeps them verbatim, since a
    question about a file asks for one of them (an amount, a port, a version, who to
    call on Monday), and `facts_of` keeps only a few key lines."""
    out: list[str] = []
    seen: set[str] = set()
    for ev in events:
        if ev.source != "files" or not ev.text:
            continue
        for item in _shaped(ev.text):
            if len(out) >= limit:
                return out
            if len(item) >= 2 and item.lower() not in seen:
                seen.add(item.lower())
                out.append(item)
    return out
