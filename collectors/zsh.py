"""Zsh history files: plain lines, or `: <start>:<elapsed>;<command>` with EXTENDED_HISTORY.

Zsh writes a command's inner newlines as backslash-newline, and adds a space after a
command's own final backslash so it does not read as a continuation. It also
"metafies" the bytes it keeps for itself (0x83-0xa2, and NUL): such a byte X is
written as 0x83 followed by X ^ 0x20, which breaks UTF-8 ("✓" is e2 9c 93 in UTF-8
but e2 83 bc 83 b3 in the file) until it is undone.
"""

from __future__ import annotations

import re

from collectors.histfile import Entry, decode

META = 0x83
HEADER = re.compile(rb": (\d+):(\d+);")


def unmetafy(raw: bytes) -> bytes:
    if META not in raw:
        return raw
    out = bytearray()
    i = 0
    while i < len(raw):
        b = raw[i]
        if b == META:
            i += 1
            if i == len(raw):
                break  # a lone Meta at the very end carries no byte
            b = raw[i] ^ 0x20
        out.append(b)
        i += 1
    return bytes(out)


def parse(data: bytes) -> tuple[list[Entry], int]:
    """Given zsh history bytes that begin at an entry boundary, return the complete
    entries and how many bytes they span. A command whose last line is unfinished, or
    still ends in a continuation backslash, is left for the next read."""
    out: list[Entry] = []
    pos = 0
    while True:
        start, parts = pos, []
        while True:
            nl = data.find(b"\n", pos)
            if nl < 0:
                return out, start
            line, pos = data[pos:nl], nl + 1
            if line.endswith(b"\\"):  # zsh's continuation: the command had a newline here
                parts.append(line[:-1])
                continue
            parts.append(line)
            break
        raw = b"\n".join(parts)
        if raw.endswith(b" ") and raw.rstrip(b" ").endswith(b"\\"):
            raw = raw[:-1]  # the space zsh added after a final backslash
        ts: float | None = None
        attrs: dict[str, object] = {}
        if m := HEADER.match(raw):
            ts = float(m[1]) or None  # ": 0:0;" is what zsh writes when it has no time
            attrs["duration_ms"] = int(m[2]) * 1000
            raw = raw[m.end():]
        if raw.strip():
            out.append(Entry(decode(unmetafy(raw)), ts, start, pos, attrs))
