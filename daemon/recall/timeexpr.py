"""Time expressions a user types in a query ("yesterday", "last Tuesday", "in March").

Given a query, the reference time `now` and the user's timezone, `parse` returns the
query without its time expression and the UTC range `[since, until)` that expression
names. Days, weeks (Monday first, as ISO 8601) and months are the user's local ones, so
"yesterday" at 00:30 in Berlin is the Berlin yesterday, not the UTC one.

A hand-written parser on purpose: it costs nothing at start-up (the CLI imports it on
every `search`), it only knows the few shapes people type, and a word it does not know
is left in the query instead of being guessed at ("may" is a verb far more often than a
month, so a bare month needs "in", "during", "since" or a year).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december")
_WD = r"(?P<wd>mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun)(?:day|nesday|rsday|urday)?"
_MON = (r"(?P<mon>jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)"
        r"(?:uary|ruary|ch|il|e|y|ust|tember|ober|ember)?")
_PART = r"(?P<part>morning|afternoon|evening|night)"
_NUM = r"(?P<n>\d{1,3}|a|an|one|two|three|four|five|six|seven|eight|nine|ten)"
_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
          "seven": 7, "eight": 8, "nine": 9, "ten": 10}
# Parts of a day, in local hours [start, end).
PARTS = {"morning": (5, 12), "afternoon": (12, 17), "evening": (17, 23), "night": (18, 30)}


@dataclass(frozen=True)
class TimeRange:
    """What a query's time expression means: `since`/`until` in UTC (until exclusive)."""
    since: datetime | None
    until: datetime | None
    text: str  # the query without the expression
    matched: str = ""  # the expression as typed, "" when there was none


def _midnight(d: date, tz: tzinfo) -> datetime:
    return datetime.combine(d, time(0), tz)


def _days(start: date, end: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """Local days [start, end) as UTC instants."""
    return _midnight(start, tz).astimezone(UTC), _midnight(end, tz).astimezone(UTC)


def _weekday(word: str) -> int:
    return next(i for i, name in enumerate(WEEKDAYS) if name.startswith(word[:3].lower()))


def _month(word: str) -> int:
    return next(i for i, name in enumerate(MONTHS, 1) if name.startswith(word[:3].lower()))


def _n(word: str) -> int:
    return _WORDS[word] if word in _WORDS else int(word)


def _month_range(year: int, month: int, tz: tzinfo) -> tuple[datetime, datetime]:
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    return _days(date(year, month, 1), nxt, tz)


def _valid_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


Range = tuple[datetime | None, datetime | None]


class _Clock:
    """Ranges relative to `now` in the user's zone `tz`, one method per kind of phrase."""

    def __init__(self, now: datetime, tz: tzinfo) -> None:
        self.now, self.tz = now, tz
        self.today = now.astimezone(tz).date()
        self.monday = self.today - timedelta(days=self.today.weekday())

    def day(self, d: date) -> Range:
        return _days(d, d + timedelta(days=1), self.tz)

    def part(self, d: date, name: str) -> Range:
        lo, hi = PARTS[name]
        start = _midnight(d, self.tz) + timedelta(hours=lo)
        return (start.astimezone(UTC),
                (_midnight(d, self.tz) + timedelta(hours=hi)).astimezone(UTC))

    def past_weekday(self, m: re.Match[str], strictly_before_today: bool) -> Range:
        back = (self.today.weekday() - _weekday(m["wd"])) % 7
        if back == 0 and strictly_before_today:
            back = 7
        return self.day(self.today - timedelta(days=back))

    def month(self, m: re.Match[str]) -> Range:
        mon, today = _month(m["mon"]), self.today
        year = int(m["year"]) if m["year"] else (today.year if mon <= today.month
                                                  else today.year - 1)
        return _month_range(year, mon, self.tz)

    def dated(self, m: re.Match[str]) -> Range | None:
        mon = _month(m["mon"])
        year = int(m["year"]) if m["year"] else self.today.year
        d = _valid_date(year, mon, int(m["d"]))
        if d is not None and not m["year"] and d > self.today:  # "March 4": the last one
            d = _valid_date(year - 1, mon, int(m["d"]))
        return self.day(d) if d else None

    def iso(self, m: re.Match[str]) -> Range | None:
        d = _valid_date(int(m["y"]), int(m["m"]), int(m["d"]))
        return self.day(d) if d else None

    def ago(self, m: re.Match[str]) -> Range:
        n, unit, now = _n(m["n"]), m["unit"], self.now
        if unit.startswith("day"):
            return self.day(self.today - timedelta(days=n))
        if unit.startswith("week"):
            start = self.monday - timedelta(weeks=n)
            return _days(start, start + timedelta(weeks=1), self.tz)
        return ((now - timedelta(hours=n + 1)).astimezone(UTC),
                (now - timedelta(hours=n - 1)).astimezone(UTC))

    def last_n(self, m: re.Match[str]) -> Range:
        n, unit = _n(m["n"]), m["unit"]
        span = {"h": timedelta(hours=n), "d": timedelta(days=n), "w": timedelta(weeks=n),
                "m": timedelta(days=30 * n)}[unit[0]]
        if unit[0] == "h":
            return (self.now - span).astimezone(UTC), None
        return _midnight(self.today - span + timedelta(days=1), self.tz).astimezone(UTC), None

    def weeks(self, first: int, last: int) -> Range:
        """From the Monday `first` weeks back to the Monday `last` weeks back."""
        return _days(self.monday - timedelta(weeks=first),
                     self.monday - timedelta(weeks=last), self.tz)


def _rules(now: datetime, tz: tzinfo) -> list[tuple[str, object]]:
    c = _Clock(now, tz)
    today, yesterday = c.today, c.today - timedelta(days=1)
    prev_month = (today.year - (today.month == 1), (today.month - 2) % 12 + 1)
    return [
        (r"(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})", c.iso),
        (rf"{_MON}\.?\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?(?:,?\s+(?P<year>\d{{4}}))?", c.dated),
        (rf"(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MON}(?:,?\s+(?P<year>\d{{4}}))?",
         c.dated),
        (r"(?:the\s+)?day\s+before\s+yesterday", lambda m: c.day(today - timedelta(days=2))),
        (rf"yesterday\s+{_PART}", lambda m: c.part(yesterday, m["part"])),
        (r"last\s+night", lambda m: c.part(yesterday, "night")),
        (rf"(?:this|today)\s+{_PART}|tonight",
         lambda m: c.part(today, m["part"] if m["part"] else "night")),
        (r"yesterday", lambda m: c.day(yesterday)),
        (r"today", lambda m: c.day(today)),
        (rf"(?:in\s+|over\s+|during\s+)?(?:the\s+)?(?:last|past)\s+{_NUM}\s+"
         r"(?P<unit>hours?|days?|weeks?|months?)", c.last_n),
        (rf"{_NUM}\s+(?P<unit>hours?|days?|weeks?)\s+ago", c.ago),
        (r"(?:the\s+)?week\s+before\s+last", lambda m: c.weeks(2, 1)),
        (r"(?:this\s+past|the\s+past)\s+week",
         lambda m: (_midnight(today - timedelta(days=6), tz).astimezone(UTC), None)),
        (r"last\s+week", lambda m: c.weeks(1, 0)),
        (r"this\s+week", lambda m: c.weeks(0, -1)),
        (r"last\s+month", lambda m: _month_range(*prev_month, tz)),
        (r"this\s+month", lambda m: _month_range(today.year, today.month, tz)),
        (rf"last\s+{_WD}", lambda m: c.past_weekday(m, True)),
        (rf"this\s+{_WD}", lambda m: c.past_weekday(m, False)),
        (rf"(?:on\s+){_WD}", lambda m: c.past_weekday(m, False)),
        (r"(?P<wd>monday|tuesday|wednesday|thursday|friday|saturday|sunday)(?=\s*[?.!,]|\s*$)",
         lambda m: c.past_weekday(m, False)),
        (rf"(?:in|during|throughout|since)\s+{_MON}(?:\s+(?P<year>\d{{4}}))?", c.month),
        (rf"{_MON}\s+(?P<year>\d{{4}})", c.month),
    ]


# Words that may precede an expression and go with it: "on 2026-03-04", "from yesterday".
_LEAD = r"(?:(?:on|from|during|for|in|at|of|since|before|until)\s+)?"
_SINCE = re.compile(r"\b(since|after)\s+$", re.I)
_BEFORE = re.compile(r"\b(before|until|till)\s+$", re.I)


def parse(query: str, now: datetime, tz: tzinfo = UTC) -> TimeRange:
    """Given a query, the reference time and the user's timezone, return its time range.

    The first expression found wins; `since`/`until` are None when the query has none.
    "since X" keeps only the start of X, "before X" only its start as the end.
    Raise ValueError if `now` is naive (a naive time has no timezone to mean).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    for pattern, build in _rules(now, tz):
        rx = rf"(?<![\w/.:-])(?P<lead>{_LEAD})(?P<core>{pattern})(?:'s|\u2019s)?(?![\w/:-])"
        for m in re.finditer(rx, query, re.I):
            found = build(m)  # type: ignore[operator]
            if found is None:
                continue
            since, until = found
            before = query[:m.start()]
            lead = m["lead"].strip().lower()
            if _SINCE.search(before) or "since" in (lead, m["core"][:5].lower()):
                until = None
                before = _SINCE.sub("", before)
            elif _BEFORE.search(before) or lead in ("before", "until"):
                since, until = None, since
                before = _BEFORE.sub("", before)
            text = " ".join(f"{before} {query[m.end():]}".split())
            text = re.sub(r"\s+([?.!,])", r"\1", text).strip(" ,")
            if not re.search(r"\w", text):
                text = ""
            return TimeRange(since, until, text, m.group(0).strip())
    return TimeRange(None, None, query)


def user_zone(name: str) -> tzinfo:
    """The zone the user's days are counted in: the IANA `name` (`[search] timezone`),
    else the machine's own."""
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            from daemon.errors import ConfigError

            raise ConfigError(f"[search] timezone {name!r} is not a known IANA zone name "
                              "(e.g. 'Europe/Berlin'); fix it or leave it empty") from None
    return datetime.now().astimezone().tzinfo or UTC
