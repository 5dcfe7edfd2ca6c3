"""The shape every secret rule shares: a kind, cheap trigger substrings, and a finder.

A rule runs only when one of its triggers (lower-case substrings) is in the text: most
text holds no secret, and `in` costs a fraction of a regex scan. A finder returns the
spans to redact; spans from all rules are merged before anything is replaced, so no rule
sees text another rule has already changed.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import accumulate
from operator import add

Span = tuple[int, int, str]  # start, end, kind
Finder = Callable[[str], Iterable[tuple[int, int]]]


@dataclass(frozen=True)
class Rule:
    kind: str
    triggers: tuple[str, ...]  # lower-case substrings; empty means always run
    find: Finder
    cased: bool = False  # the triggers are matched against the text as it is
    # its finder never matches across a "\x00" and takes one for a line break, so it may
    # run once over many texts joined by "\x00" (a rule whose trigger is in most texts)
    joinable: bool = False

    def spans(self, text: str) -> list[Span]:
        return [(s, e, self.kind) for s, e in self.find(text) if e > s]


class RuleSet:
    """Rules indexed by trigger. One Aho-Corasick pass finds every trigger present in a
    text at once, whatever their number: asking `t in text` once per trigger cost more
    than all the rules that then ran (134 us against 100 per 300 characters). The pass is
    ahocorasick-rs's DFA (Rust): 2.7 us per 300 characters, where pyahocorasick's
    automaton took 11 (its loop costs ~40 ns a character, match or not). One-character
    triggers (quotes) are in most texts: they are asked with `in`."""

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        from ahocorasick_rs import AhoCorasick, Implementation

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
        # in a batch, the joinable rules run over all texts at once; the other plain
        # triggers are looked for in them all
        self._joined_ix = frozenset(i for i, r in enumerate(rules) if r.joinable)
        self._joined = tuple(rules[i] for i in sorted(self._joined_ix))
        self._plain_alone = tuple((t, tuple(i for i in ix if i not in self._joined_ix))
                                  for t, ix in self._plain
                                  if any(i not in self._joined_ix for i in ix))
        lower = [(t, tuple(ix)) for (t, cased), ix in by.items() if len(t) > 1 and not cased]
        lower = lower or [("\x00never\x00", ())]  # the crate refuses an empty list
        self._rules_of = tuple(ix for _, ix in lower)  # pattern index -> rule indices
        # overlapping: every trigger present is reported, also one inside another
        # ("pass" in "passw"); the DFA is the fastest of the crate's automata here
        self._scan = AhoCorasick([t for t, _ in lower],
                                 implementation=Implementation.DFA).find_matches_as_indexes

    def spans(self, text: str) -> list[Span]:
        """Every rule's spans in `text` (not merged), from the rules whose triggers are in
        it and those that always run."""
        hit: set[int] = set()
        rules_of = self._rules_of
        for p in {m[0] for m in self._scan(text.lower(), overlapping=True)}:
            hit.update(rules_of[p])
        return self._run(text, hit)

    def spans_each(self, texts: list[str]) -> list[list[Span]]:
        """`[spans(t) for t in texts]` with one trigger pass over them all (an event's
        subject, title and text: one call into the automaton instead of three). No
        trigger holds "\x00", so none is found across two texts."""
        joined = "\x00".join(texts)
        lower = joined.lower()
        if len(lower) != len(joined):  # "İ".lower() is two characters: offsets move
            return [self.spans(t) for t in texts]
        hits: list[set[int]] = [set() for _ in texts]
        found = self._scan(lower, overlapping=True)
        if found:
            starts, at = [], 0
            for t in texts:
                starts.append(at)
                at += len(t) + 1
            rules_of = self._rules_of
            for p, start, _ in found:
                hits[bisect_right(starts, start) - 1].update(rules_of[p])
        return [self._run(t, hit) for t, hit in zip(texts, hits, strict=True)]

    def spans_batch(self, texts: list[str]) -> dict[int, list[Span]]:
        """The spans of many texts (a batch of events' fields), by index, for the texts
        that have any: one trigger pass over them all, the joinable rules run once over
        them all, and a text no trigger names costs no call at all (most of a backfill)."""
        if self._always:
            return {i: got for i, t in enumerate(texts) if (got := self.spans(t))}
        joined = "\x00".join(texts)
        # text by text: most are ASCII, which lowers at C speed, where one non-ASCII
        # character anywhere would make the whole batch lower through the Unicode tables
        lowers = [t.lower() for t in texts]
        lower = "\x00".join(lowers)
        odd: list[int] = []
        if len(lower) != len(joined):  # "İ".lower() is two characters: offsets move
            odd = [i for i, (t, low) in enumerate(zip(texts, lowers, strict=True))
                   if len(low) != len(t)]
            for i in odd:
                lowers[i] = "\x01" * len(texts[i])  # holds no trigger; done alone below
            lower = "\x00".join(lowers)
        # where each text starts in `joined`: the lengths before it, and one "\x00" each
        starts = list(map(add, accumulate(map(len, texts), initial=0), range(len(texts))))
        hits: dict[int, set[int]] = {}
        rules_of = self._rules_of
        for p, start, _ in self._scan(lower, overlapping=True):
            hits.setdefault(bisect_right(starts, start) - 1, set()).update(rules_of[p])
        for t, ix in self._plain_alone:
            at = joined.find(t)
            while at != -1:
                hits.setdefault(bisect_right(starts, at) - 1, set()).update(ix)
                at = joined.find(t, at + 1)
        out: dict[int, list[Span]] = {}
        for i, hit in hits.items():
            if found := self._rules(texts[i], hit - self._joined_ix):
                out[i] = found
        for rule in self._joined:  # after the others, as in spans(): a tie keeps their kind
            for s, e in rule.find(joined):
                if e > s:
                    i = bisect_right(starts, s) - 1
                    out.setdefault(i, []).append((s - starts[i], e - starts[i], rule.kind))
        for i in odd:
            if found := self.spans(texts[i]):
                out[i] = found
            else:
                out.pop(i, None)
        return out

    def _run(self, text: str, hit: set[int]) -> list[Span]:
        for t, ix in self._plain:
            if t in text:
                hit.update(ix)
        return self._rules(text, hit)

    def _rules(self, text: str, hit: set[int]) -> list[Span]:
        if not hit and not self._always:
            return []
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
