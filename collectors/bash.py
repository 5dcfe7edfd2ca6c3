"""Bash history files.

Bash writes one command a line. With HISTTIMEFORMAT set it writes a `#<epoch>` line
before each command, and then a command may span several lines (`shopt -s lithist`
keeps a multi-line command's newlines): everything up to the next `#<epoch>` line is
one command. Without HISTTIMEFORMAT the file records no times at all.
"""

from __future__ import annotations

import re

from collectors.histfile import Entry, decode

# bash itself takes any line starting "#<digit>" as a time; a whole-line match is
# stricter, so a comment like "#1 thing" stays a command
STAMP = re.compile(rb"#(\d{1,12})")


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
