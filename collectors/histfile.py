"""The `Entry` every shell history parser returns, and how history bytes become text."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Entry:
    """One command as a history recorded it.

    `start`/`end` are byte offsets into the parsed data (text histories), `ts` is epoch
    seconds or None when the shell recorded no time, and `key`, when set, is the
    history's own stable id for the entry (atuin's row id).
    """

    command: str
    ts: float | None = None
    start: int = 0
    end: int = 0
    attrs: dict[str, object] = field(default_factory=dict)
    key: str = ""


def decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")
