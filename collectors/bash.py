"""Bash history files, and the `Entry` every shell history parser returns.

Bash writes one command a line. With HISTTIMEFORMAT set it writes a `#<epoch>` line
before each command, and then a command may span several lines (`shopt -s lithist`
keeps a multi-line command's newlines): everything up to the next `#<epoch>` line is
one command. Without HISTTIMEFORMAT the file records no times at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# bash itself takes any line starting "#<digit>" as a time; a whole-line match is
# stricter, so a comment like "#1 thing" stays a command
STAMP = re.compile(rb"#(\d{1,12})")


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


def parse(data: bytes) -> tuple[list[Entry], int]:
    """Given bash history bytes that begin at an entry boundary, return the complete
    entries and how many bytes they span. A last line without its newline, or a time
    line whose command is not written yet, is left for the next read."""
    out: list[Entry] = []
    complete = data.rfind(b"\n") + 1
    stamp: float | None = None  # time of the timestamped entry being gathered
    start = 0
    lines: list[bytes] = []
    pos = 0
    while pos < complete:
        nl = data.index(b"\n", pos)
        line = data[pos:nl]
        if m := STAMP.fullmatch(line):
            if stamp is not None and lines:
                out.append(_timed(lines, stamp, start, pos))
            stamp, start, lines = float(m[1]), pos, []
        elif stamp is not None:
            lines.append(line)
        elif line.strip():
            out.append(Entry(decode(line), None, pos, nl + 1))
        pos = nl + 1
    if stamp is not None:
        if not lines:
            return out, start
        out.append(_timed(lines, stamp, start, complete))
    return out, complete


def _timed(lines: list[bytes], stamp: float, start: int, end: int) -> Entry:
    return Entry(decode(b"\n".join(lines).rstrip(b"\n")), stamp, start, end)
