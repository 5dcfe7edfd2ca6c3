"""Fish history files (~/.local/share/fish/fish_history): YAML-like entries.

    - cmd: for i in 1 2\\necho "multi $i"\\nend
      when: 1795657731
      paths:
        - /tmp

fish escapes only two things in values: a backslash as `\\\\` and a newline as `\\n`.
"""

from __future__ import annotations

from collectors.histfile import Entry, decode

CMD, WHEN, PATHS, ITEM = b"- cmd:", b"  when:", b"  paths:", b"    - "


def unescape(raw: bytes) -> str:
    out = bytearray()
    i = 0
    while i < len(raw):
        b = raw[i]
        if b == 0x5C and i + 1 < len(raw) and raw[i + 1] in b"\\n":
            out.append(0x5C if raw[i + 1] == 0x5C else 0x0A)
            i += 2
            continue
        out.append(b)
        i += 1
    return decode(bytes(out))


def parse(data: bytes) -> tuple[list[Entry], int]:
    """Given fish history bytes that begin at an entry boundary, return the complete
    entries and how many bytes they span. The last entry waits until its `when:` line
    is written (fish writes an entry at once, so that is only ever a moment)."""
    out: list[Entry] = []
    complete = data.rfind(b"\n") + 1
    cmd: bytes | None = None
    when: float | None = None
    paths: list[str] = []
    start = pos = 0

    def close(end: int) -> None:
        if cmd is not None and cmd.strip():
            attrs: dict[str, object] = {"paths": list(paths)} if paths else {}
            out.append(Entry(unescape(cmd), when, start, end, attrs))

    while pos < complete:
        nl = data.index(b"\n", pos)
        line = data[pos:nl]
        if line.startswith(CMD):
            close(pos)
            cmd, when, paths, start = line[len(CMD):].removeprefix(b" "), None, [], pos
        elif line.startswith(WHEN) and cmd is not None:
            try:
                when = float(line[len(WHEN):].strip())
            except ValueError:
                when = None
        elif line.startswith(ITEM) and cmd is not None:
            paths.append(unescape(line[len(ITEM):]))
        pos = nl + 1
    if cmd is not None and when is None:
        return out, start
    close(complete)
    return out, complete
