"""The shape every secret rule shares: a kind, cheap trigger substrings, and a finder.

A rule runs only when one of its triggers (lower-case substrings) is in the text: most
text holds no secret, and `in` costs a fraction of a regex scan. A finder returns the
spans to redact; spans from all rules are merged before anything is replaced, so no rule
sees text another rule has already changed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

Span = tuple[int, int, str]  # start, end, kind
Finder = Callable[[str], Iterable[tuple[int, int]]]


@dataclass(frozen=True)
class Rule:
    kind: str
    triggers: tuple[str, ...]  # lower-case substrings; empty means always run
    find: Finder
    cased: bool = False  # the triggers are matched against the text as it is

    def spans(self, text: str) -> list[Span]:
        return [(s, e, self.kind) for s, e in self.find(text) if e > s]


class RuleSet:
    """Rules indexed by trigger. One Aho-Corasick pass (pyahocorasick) finds every trigger
    present in a text at once, whatever their number: asking `t in text` once per trigger
    cost more than all the rules that then ran (134 us against 100 per 300 characters).
    One-character triggers (quotes) are in most texts: they are asked with `in`."""

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        import ahocorasick

        self.rules = rules
        self._always = tuple(r for r in rules if not r.triggers)
        by: dict[tuple[str, bool], list[int]] = {}
        for i, r in enumerate(rules):
            for t in r.triggers:
                by.setdefault((t, r.cased), []).append(i)
        self._chars = tuple((t, tuple(ix)) for (t, cased), ix in by.items()
                            if len(t) == 1 and not cased)
        # case-sensitive triggers are few ("AC", "SK"): `in` is cheaper than a second pass
        self._cased = tuple((t, tuple(ix)) for (t, cased), ix in by.items() if cased)
        self._plain = self._chars + self._cased  # asked with `in` on the text as it is
        self._lower = ahocorasick.Automaton()
        for (t, cased), ix in by.items():
            if len(t) > 1 and not cased:
                self._lower.add_word(t, tuple(ix))
        if not len(self._lower):
            self._lower.add_word("\x00never\x00", ())
        self._lower.make_automaton()

    def spans(self, text: str) -> list[Span]:
        hit: set[int] = set()
        for _, ix in self._lower.iter(text.lower()):
            hit.update(ix)
        for t, ix in self._plain:
            if t in text:
                hit.update(ix)
        out: list[Span] = []
        for rule in self._always:
            out += rule.spans(text)
        rules = self.rules
        for i in sorted(hit):
            out += rules[i].spans(text)
        return out


def regex_finder(pattern: re.Pattern[str], group: str | int = 0,
                 accept: Callable[[re.Match[str]], bool] | None = None) -> Finder:
    """Spans of `group` in every match of `pattern` (that `accept` keeps)."""

    def find(text: str) -> Iterable[tuple[int, int]]:
        for m in pattern.finditer(text):
            if m.group(group) is not None and (accept is None or accept(m)):
                yield m.span(group)

    return find


def regex_rule(kind: str, triggers: tuple[str, ...], pattern: str, flags: int = 0,
               group: str | int = 0, edge: bool = False) -> Rule:
    """A rule from a pattern; with `edge` a match must start at a word edge. (The edge is
    checked after the match, not by a look-behind in the pattern: a pattern that starts
    with a literal is scanned for it at C speed, one that starts with a look-behind is
    tried at every position, 20-70 us per 300 characters.)"""
    accept = _at_edge if edge else None
    return Rule(kind, triggers, regex_finder(re.compile(pattern, flags), group, accept))


_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _at_edge(m: re.Match[str]) -> bool:
    start = m.start()
    return start == 0 or m.string[start - 1] not in _WORD


def values_finder(analyze: Callable[[str], Iterable[str]], per_line: bool,
                  line_triggers: tuple[str, ...] = ()) -> Finder:
    """Spans of every occurrence of the values a detector reports (detect-secrets'
    plugins report secret values, not positions). `per_line` runs it line by line, as
    detect-secrets itself does, on the lines holding a trigger."""

    def find(text: str) -> Iterable[tuple[int, int]]:
        if not per_line:
            yield from _occurrences(text, 0, analyze(text))
            return
        start = 0
        for line in text.splitlines(keepends=True):
            if not line_triggers or any(t in line.lower() for t in line_triggers):
                yield from _occurrences(line, start, analyze(line))
            start += len(line)

    return find


# A value shorter than this is not looked for elsewhere in the text: "p" from
# "u:p@ss@host" would take every "p". Short secrets in their place are left to the
# positional rules (daemon/intake/secrets/context.py).
MIN_VALUE = 5


def _occurrences(text: str, offset: int, values: Iterable[str]) -> Iterable[tuple[int, int]]:
    for value in values:
        if len(value) < MIN_VALUE:
            continue
        i = text.find(value)
        while i != -1:
            yield offset + i, offset + i + len(value)
            i = text.find(value, i + len(value))


def merge(spans: list[Span]) -> list[Span]:
    """Overlapping spans as one, keeping the kind of the one that starts first."""
    if len(spans) < 2:
        return spans
    out: list[Span] = []
    for s, e, kind in sorted(spans, key=lambda x: (x[0], -x[1])):
        if out and s <= out[-1][1]:
            ps, pe, pk = out[-1]
            out[-1] = (ps, max(pe, e), pk)
        else:
            out.append((s, e, kind))
    return out
