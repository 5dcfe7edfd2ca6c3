"""Time expressions become UTC ranges in the user's timezone and leave the query text."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from daemon.recall.timeexpr import parse

# Thursday 2026-03-12, 15:30 UTC (16:30 in Berlin, 08:30 in Los Angeles).
NOW = datetime(2026, 3, 12, 15, 30, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


@pytest.mark.parametrize("query, since, until, text", [
    ("what did I do yesterday?", utc(2026, 3, 11), utc(2026, 3, 12), "what did I do?"),
    ("what did I do last Tuesday on the ranker", utc(2026, 3, 10), utc(2026, 3, 11),
     "what did I do on the ranker"),
    ("notes from this week", utc(2026, 3, 9), utc(2026, 3, 16), "notes"),
    ("last week's PR", utc(2026, 3, 2), utc(2026, 3, 9), "PR"),
    ("deploy on 2026-03-04", utc(2026, 3, 4), utc(2026, 3, 5), "deploy"),
    ("pages read in March", utc(2026, 3, 1), utc(2026, 4, 1), "pages read"),
    ("what did I read this morning", utc(2026, 3, 12, 5), utc(2026, 3, 12, 12),
     "what did I read"),
    ("since monday, which tests failed", utc(2026, 3, 9), None, "which tests failed"),
    ("the invoice 2 days ago", utc(2026, 3, 10), utc(2026, 3, 11), "the invoice"),
    ("commands in the last 3 days", utc(2026, 3, 10), None, "commands"),
    ("what did I do on Thursday", utc(2026, 3, 12), utc(2026, 3, 13), "what did I do"),
    ("in december", utc(2025, 12, 1), utc(2026, 1, 1), ""),  # the last December, not a future one
])
def test_expressions_in_utc(query: str, since: datetime | None, until: datetime | None,
                            text: str) -> None:
    r = parse(query, NOW, UTC)
    assert (r.since, r.until, r.text) == (since, until, text)


def test_last_weekday_on_that_weekday_means_a_week_ago() -> None:
    r = parse("last thursday", NOW, UTC)
    assert (r.since, r.until) == (utc(2026, 3, 5), utc(2026, 3, 6))


def test_days_are_the_users_local_days() -> None:
    # 00:30 on Friday in Berlin is still Thursday in UTC: "yesterday" is Berlin's Thursday.
    now = datetime(2026, 3, 12, 23, 30, tzinfo=UTC)
    r = parse("yesterday", now, BERLIN)
    assert (r.since, r.until) == (utc(2026, 3, 11, 23), utc(2026, 3, 12, 23))
    la = parse("yesterday", NOW, ZoneInfo("America/Los_Angeles"))
    assert (la.since, la.until) == (utc(2026, 3, 11, 7), utc(2026, 3, 12, 7))


@pytest.mark.parametrize("query", [
    "what may I have missed", "how close together do two copies of the same sales event get",
    "the v0.9.3 release", "fix/decay-applied-twice", "release 2026-03-04T10:00 build",
    "sat on the branch", "ServerAliveInterval 30", "what port does the endpoint listen on",
])
def test_ordinary_words_are_not_taken_for_times(query: str) -> None:
    r = parse(query, NOW, UTC)
    assert (r.since, r.until, r.text) == (None, None, query)


def test_before_keeps_only_an_end_and_a_naive_now_is_refused() -> None:
    r = parse("builds before yesterday", NOW, UTC)
    assert (r.since, r.until, r.text) == (None, utc(2026, 3, 11), "builds")
    with pytest.raises(ValueError, match="timezone-aware"):
        parse("yesterday", datetime(2026, 3, 12), UTC)
