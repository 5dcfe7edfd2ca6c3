"""Property tests of the shell history parsers (hypothesis).

Each parser is given (1) arbitrary bytes, and must neither raise nor claim bytes it did
not parse; (2) histories written the way the shell writes them, and must give back the
exact commands, whole or read in two pieces cut anywhere, so a collector that resumes at
the returned offset never loses, splits or repeats a command.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors import bash, fish, zsh
from collectors.histfile import Entry

Parser = Callable[[bytes], tuple[list[Entry], int]]
PARSERS: dict[str, Parser] = {"bash": bash.parse, "zsh": zsh.parse, "fish": fish.parse}
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Commands as people type them: any printable text, including non-ASCII, quotes,
# backslashes and the bytes zsh metafies; no carriage returns or NULs (no shell keeps them).
_chars = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\r")
one_line = st.text(_chars, min_size=1, max_size=40).filter(lambda s: s.strip() != "")
multi_line = st.lists(one_line, min_size=1, max_size=4).map("\n".join)
stamps = st.integers(min_value=1, max_value=4_102_444_800)


def _check_offsets(data: bytes, entries: list[Entry], consumed: int) -> None:
    assert 0 <= consumed <= len(data)
    last_end = 0
    for e in entries:
        assert last_end <= e.start < e.end <= consumed, (e, consumed)
        last_end = e.end


@FUZZ
@given(data=st.binary(max_size=600))
def test_every_parser_survives_arbitrary_bytes(data: bytes) -> None:
    for parse in PARSERS.values():
        entries, consumed = parse(data)
        _check_offsets(data, entries, consumed)


@FUZZ
@given(data=st.binary(max_size=300).map(lambda b: b.replace(b"\r", b"")),
       noise=st.sampled_from([b"#1700000000\n", b": 1700000000:0;", b"- cmd: ", b"\\\n",
                              b"  when: x\n", b"\x83", b"\n"]))
def test_every_parser_survives_format_shaped_garbage(data: bytes, noise: bytes) -> None:
    mixed = noise + data + noise + data[::-1] + noise
    for parse in PARSERS.values():
        entries, consumed = parse(mixed)
        _check_offsets(mixed, entries, consumed)


# --- the writers: what each shell appends for one command --------------------------


def write_bash(cmd: str, ts: int) -> bytes:
    return f"#{ts}\n{cmd}\n".encode()  # HISTTIMEFORMAT set, lithist keeps inner newlines


def _metafy(raw: bytes) -> bytes:
    out = bytearray()
    for b in raw:
        if b == 0 or 0x83 <= b <= 0xA2:
            out += bytes((0x83, b ^ 0x20))
        else:
            out.append(b)
    return bytes(out)


def write_zsh(cmd: str, ts: int) -> bytes:
    body = cmd.replace("\n", "\\\n")
    if body.endswith("\\"):
        body += " "  # zsh's space after a final backslash, so it is not a continuation
    return _metafy(f": {ts}:0;{body}\n".encode())


def write_fish(cmd: str, ts: int) -> bytes:
    escaped = cmd.replace("\\", "\\\\").replace("\n", "\\n")
    return f"- cmd: {escaped}\n  when: {ts}\n".encode()


WRITERS = {"bash": write_bash, "zsh": write_zsh, "fish": write_fish}
_bash_safe = multi_line.filter(lambda c: not any(bash.STAMP.fullmatch(line.encode())
                                                 for line in c.split("\n")))


def _history(shell: str, cmds: list[str], times: list[int]) -> bytes:
    return b"".join(WRITERS[shell](c, t) for c, t in zip(cmds, times, strict=False))


@FUZZ
@given(shell=st.sampled_from(sorted(WRITERS)), cmds=st.lists(_bash_safe, max_size=8),
       times=st.lists(stamps, min_size=8, max_size=8))
def test_a_written_history_parses_back_to_its_commands_and_times(
        shell: str, cmds: list[str], times: list[int]) -> None:
    data = _history(shell, cmds, times)
    entries, consumed = PARSERS[shell](data)
    assert consumed == len(data)
    assert [e.command for e in entries] == cmds
    assert [e.ts for e in entries] == [float(t) for t in times[:len(cmds)]]
    for e in entries:  # each entry's bytes alone parse to that entry
        alone, _ = PARSERS[shell](data[e.start:e.end])
        assert [a.command for a in alone] == [e.command]


def _read_in_two_pieces_gives_back(shell: str, cmds: list[str], times: list[int],
                                   cut: float) -> None:
    """Write the history, read it in two pieces cut at `cut` of its bytes (the second
    from where the first stopped consuming): every command comes back once, in order."""
    data = _history(shell, cmds, times)
    first, n1 = PARSERS[shell](data[:int(len(data) * cut)])
    rest, n2 = PARSERS[shell](data[n1:])
    assert n1 + n2 == len(data)
    assert [(e.command, e.ts) for e in first + rest] == [
        (c, float(t)) for c, t in zip(cmds, times, strict=False)]


@FUZZ
@given(shell=st.sampled_from(sorted(WRITERS)), cmds=st.lists(one_line, min_size=1, max_size=6),
       times=st.lists(stamps, min_size=6, max_size=6), cut=st.floats(0, 1))
def test_reading_in_two_pieces_cut_anywhere_loses_and_repeats_nothing(
        shell: str, cmds: list[str], times: list[int], cut: float) -> None:
    # A reader may catch the file at any byte while the shell appends to it.
    _read_in_two_pieces_gives_back(shell, cmds, times, cut)


@FUZZ
@given(shell=st.sampled_from(["zsh", "fish"]), cmds=st.lists(multi_line, min_size=1, max_size=5),
       times=st.lists(stamps, min_size=5, max_size=5), cut=st.floats(0, 1))
def test_multi_line_commands_cut_anywhere_come_back_whole(
        shell: str, cmds: list[str], times: list[int], cut: float) -> None:
    # zsh and fish mark where a command ends, so a half-written one waits for the rest.
    # (bash does not: with lithist, a multi-line command read while bash is still
    # writing it would be cut short; bash writes its history in one go at exit.)
    _read_in_two_pieces_gives_back(shell, cmds, times, cut)
