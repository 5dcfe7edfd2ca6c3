"""The shell collector on histories written by real bash, zsh, fish and atuin."""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

import pytest

from collectors.shell import ShellCollector, build_shell_collector
from daemon.intake.journal import NEW, Journal
from tests.collectors import shell_fixtures as real

MULTI_BASH = 'for i in 1 2; do\n  echo "multi $i"\ndone'
BASH_CMDS = ["echo first command", "sleep 1", "cd /tmp && ls -d .", MULTI_BASH,
             "echo 'quote \"double\" and \\backslash'", "echo café ünïcode ✓"]
ZSH_CMDS = ["echo first command", "sleep 1", MULTI_BASH, "print -r -- 'a \\ and \"quotes\"'",
            "echo café ünïcode ✓ ß", "echo ends with a backslash\\\\"]
# "é", "ü" and "ï" have no byte zsh metafies; "✓" (e2 9c 93) and "ß" (c3 9f) do
ZSH_PLAIN_CMDS = ["echo first command", MULTI_BASH, "echo café ünïcode ✓ ß",
                  "echo ends with a backslash\\\\"]
FISH_CMDS = ["echo hello from fish", "cd /tmp", 'for i in 1 2\necho "multi $i"\nend',
             "echo 'quote \"double\" and \\\\backslash'", "echo café ünïcode ✓"]
ATUIN_CMDS = ["echo hello atuin", "cd /tmp", "false", "sleep 0.3",
              'for i in 1 2; do\necho "multi $i"\ndone']


@dataclass(frozen=True)
class Built:
    home: Path
    file: Path
    started: float
    ended: float


def build(base: Path, make) -> Built:  # type: ignore[no-untyped-def]
    started = time.time()
    file = make(base)
    return Built(base, file, started, time.time())


@pytest.fixture(scope="session")
def bash_timed(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("bash-timed"),
                 lambda h: real.bash_history(h, BASH_CMDS, timestamps=True))


@pytest.fixture(scope="session")
def zsh_built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("zsh"), lambda h: real.zsh_history(h, ZSH_CMDS))


@pytest.fixture(scope="session")
def fish_built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("fish"), lambda h: real.fish_history(h, FISH_CMDS))


@pytest.fixture(scope="session")
def atuin_built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("atuin"),
                 lambda h: real.atuin_zsh_history(h, ATUIN_CMDS))


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal.sqlite3")
    yield j
    j.close()


def copy_home(built: Built, dest: Path) -> Path:
    shutil.copytree(built.home, dest, symlinks=True)
    return dest


def events(j: Journal) -> list:  # type: ignore[type-arg]
    return j.at_stage(NEW, 100_000)


def by_shell(j: Journal, shell: str) -> list:  # type: ignore[type-arg]
    return [e for e in events(j) if e.attrs["shell"] == shell]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "-"


def assert_times_within(evs: list, built: Built) -> None:  # type: ignore[type-arg]
    for e in evs:
        assert e.ts.tzinfo == UTC
        # shells keep whole seconds: the first command may carry the second it began in
        assert int(built.started) <= e.ts.timestamp() <= built.ended + 1, e


# -- each shell's real history --------------------------------------------------------


def test_bash_with_histtimeformat_gives_each_command_its_time(bash_timed: Built,
                                                              journal: Journal) -> None:
    c = ShellCollector(home=bash_timed.home)
    assert c.poll(journal) == len(BASH_CMDS)
    evs = events(journal)
    assert [e.subject for e in evs] == BASH_CMDS  # multi-line kept whole (lithist)
    assert all(e.source == "shell" and e.kind == "shell.command" for e in evs)
    assert all(e.attrs["shell"] == "bash" and "time_from" not in e.attrs for e in evs)
    assert evs[0].attrs["history_file"] == str(bash_timed.file.resolve())
    assert_times_within(evs, bash_timed)
    # bash stamps a command when it reads it: the one after `sleep 1` is a second later
    assert (evs[2].ts - evs[1].ts).total_seconds() >= 1
    multi = evs[3]
    assert multi.title == "for i in 1 2; do" and multi.text == MULTI_BASH
    assert evs[5].subject == "echo café ünïcode ✓"
    assert c.poll(journal) == 0


def test_bash_without_histtimeformat_is_stamped_with_the_file_mtime(tmp_path: Path,
                                                                    journal: Journal) -> None:
    cmds = ["echo one", "git status", MULTI_BASH]
    file = real.bash_history(tmp_path / "home", cmds, timestamps=False)
    assert b"#1" not in file.read_bytes()
    assert ShellCollector(home=tmp_path / "home").poll(journal) == 3
    evs = events(journal)
    # bash's default cmdhist puts a multi-line command on one line when no times are kept
    assert [e.subject for e in evs] == ["echo one", "git status",
                                         'for i in 1 2; do   echo "multi $i"; done']
    mtime = file.stat().st_mtime
    assert all(abs(e.ts.timestamp() - mtime) < 1e-3 for e in evs)
    assert all(e.attrs["time_from"] == "file mtime" for e in evs)


def test_zsh_extended_history_with_multiline_commands_and_metafied_bytes(
        zsh_built: Built, journal: Journal) -> None:
    raw = zsh_built.file.read_bytes()
    assert b"\x83" in raw and b"\\\n" in raw  # the file really is metafied and continued
    assert ShellCollector(home=zsh_built.home).poll(journal) == len(ZSH_CMDS)
    evs = events(journal)
    assert [e.subject for e in evs] == ZSH_CMDS
    assert all(e.attrs["shell"] == "zsh" for e in evs)
    assert_times_within(evs, zsh_built)
    assert evs[1].attrs["duration_ms"] >= 1000  # `sleep 1`, timed by zsh itself
    assert evs[2].title == "for i in 1 2; do"
    assert evs[4].subject == "echo café ünïcode ✓ ß"


def test_zsh_plain_history_is_stamped_with_the_file_mtime(tmp_path: Path,
                                                          journal: Journal) -> None:
    home = tmp_path / "home"
    file = real.zsh_history(home, ZSH_PLAIN_CMDS, extended=False)
    raw = file.read_bytes()
    # the plain format: no `: <start>:<elapsed>;` on any line, yet metafied and continued
    assert not re.search(rb"(?m)^: \d+:\d+;", raw) and raw.startswith(b"echo first command\n")
    assert b"\x83" in raw and b"\\\n" in raw
    c = ShellCollector(home=home)
    assert c.poll(journal) == len(ZSH_PLAIN_CMDS)
    evs = events(journal)
    assert [e.subject for e in evs] == ZSH_PLAIN_CMDS
    assert evs[1].title == "for i in 1 2; do" and evs[2].subject == "echo café ünïcode ✓ ß"
    assert all(e.attrs["shell"] == "zsh" and e.attrs["time_from"] == "file mtime"
               and "duration_ms" not in e.attrs for e in evs)
    mtime = file.stat().st_mtime
    assert all(abs(e.ts.timestamp() - mtime) < 1e-3 for e in evs)
    assert c.poll(journal) == 0
    assert ShellCollector(home=home).poll(journal) == 0  # restarted: the cursor holds
    # a later zsh appends one more command to the same file
    real.zsh_history(home, ["echo appended later"], extended=False)
    assert file.read_bytes() == raw + b"echo appended later\n"
    assert c.poll(journal) == 1
    last = events(journal)[-1]
    assert last.subject == "echo appended later" and last.attrs["time_from"] == "file mtime"
    assert abs(last.ts.timestamp() - file.stat().st_mtime) < 1e-3
    assert c.poll(journal) == 0
    assert len(events(journal)) == len(ZSH_PLAIN_CMDS) + 1


def test_zsh_is_read_as_it_writes_each_command(tmp_path: Path, journal: Journal) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".zshrc").write_text(
        f"HISTFILE={home}/.zsh_history; HISTSIZE=1000; SAVEHIST=1000\n"
        "setopt EXTENDED_HISTORY INC_APPEND_HISTORY_TIME\nPS1='> '\n"
        "__n=0; __mark() { (( ++__n )); printf '\\036%d\\036' $__n }; "
        "precmd_functions+=(__mark)\n")
    t = real.Terminal(["zsh", "-d", "-i"], real.env_for(home, ZDOTDIR=str(home)), home)
    c = ShellCollector(home=home)
    try:
        t.wait_prompt()
        for cmd in ["echo one", "echo two", "ls -d /tmp"]:
            t.run(cmd)
            assert poll_until(c, journal, 1) == 1
            assert events(journal)[-1].subject == cmd
    finally:
        t.close()


def test_fish_history_typed_through_a_terminal(fish_built: Built, journal: Journal) -> None:
    assert ShellCollector(home=fish_built.home).poll(journal) == len(FISH_CMDS)
    evs = events(journal)
    assert [e.subject for e in evs] == FISH_CMDS
    assert all(e.attrs["shell"] == "fish" for e in evs)
    assert_times_within(evs, fish_built)
    # fish adds `paths:` to an entry when its background check of the arguments finished
    # before the entry was written (on a loaded machine it may not): the event carries
    # exactly what fish wrote.
    raw = fish_built.file.read_text()
    block = raw.split("- cmd: cd /tmp\n", 1)[1].split("- cmd:", 1)[0]
    assert evs[1].attrs.get("paths") == (["/tmp"] if "    - /tmp" in block else None)
    assert evs[2].title == "for i in 1 2"


def poll_until(c: ShellCollector, journal: Journal, want: int, seconds: float = 10) -> int:
    got = 0
    deadline = time.monotonic() + seconds
    while got < want and time.monotonic() < deadline:
        got += c.poll(journal)
        if got < want:
            time.sleep(0.1)
    return got


def test_fish_is_read_as_it_writes_each_command(fish_built: Built, tmp_path: Path,
                                                journal: Journal) -> None:
    home = copy_home(fish_built, tmp_path / "home")
    c = ShellCollector(home=home)
    assert c.poll(journal) == len(FISH_CMDS)
    t = real.Terminal(["fish"], real.env_for(home), home)
    try:
        t.wait_prompt()
        for cmd in ["echo one", "echo two"]:
            t.run(cmd)
            assert poll_until(c, journal, 1) == 1
            assert events(journal)[-1].subject == cmd
        # the same command twice, most likely within the same second, is kept twice
        # (fish itself drops a repeat only when it follows right on the first)
        for cmd in ["echo again", "true", "echo again"]:
            t.run(cmd)
        # fish may draw its prompt a moment before it appends the last command
        assert poll_until(c, journal, 3) == 3
        assert [e.subject for e in events(journal)][-3:] == ["echo again", "true", "echo again"]
    finally:
        t.close()
    assert c.poll(journal) == 0


def test_atuin_records_cwd_exit_duration_and_session(atuin_built: Built, tmp_path: Path,
                                                     journal: Journal) -> None:
    home = copy_home(atuin_built, tmp_path / "home")
    db = real.atuin_db(home)
    before = {p: digest(p) for p in (db, Path(f"{db}-wal"))}
    ShellCollector(home=home).poll(journal)
    assert {p: digest(p) for p in before} == before  # read, never written
    evs = by_shell(journal, "atuin")
    assert [e.subject for e in evs] == ATUIN_CMDS
    cwd = str(atuin_built.home)
    assert [e.attrs["cwd"] for e in evs] == [cwd, cwd, "/tmp", "/tmp", "/tmp"]
    assert [e.attrs["exit"] for e in evs] == [0, 0, 1, 0, 0]
    assert evs[3].attrs["duration_ms"] >= 300  # sleep 0.3
    assert len({e.attrs["session"] for e in evs}) == 1 and evs[0].attrs["session"]
    assert evs[0].attrs["atuin_shell"] == "zsh" and evs[0].attrs["hostname"]
    assert all(atuin_built.started - 1 <= e.ts.timestamp() <= atuin_built.ended for e in evs)
    # the same zsh kept its own history file too: both are collected
    assert [e.subject for e in by_shell(journal, "zsh")] == ATUIN_CMDS


def test_atuin_command_still_running_is_held_until_it_ends(atuin_built: Built, tmp_path: Path,
                                                          journal: Journal) -> None:
    home = copy_home(atuin_built, tmp_path / "home")
    c = ShellCollector(home=home)
    c.poll(journal)
    session = real.atuin_session(home)
    build_id = real.atuin_start(home, "make build", session, cwd=tmp_path)
    assert c.poll(journal) == 0
    real.atuin_end(home, build_id, exit=2, duration_ns=1_500_000_000, session=session)
    assert c.poll(journal) == 1
    ev = events(journal)[-1]
    assert ev.subject == "make build" and ev.attrs["exit"] == 2
    assert ev.attrs["duration_ms"] == 1500 and ev.attrs["cwd"] == str(tmp_path)
    # a command whose end atuin never recorded comes once its session moved on
    real.atuin_start(home, "vim notes.md", session, cwd=tmp_path)
    assert c.poll(journal) == 0
    ls_id = real.atuin_start(home, "ls", session, cwd=tmp_path)
    real.atuin_end(home, ls_id, exit=0, duration_ns=1_000_000, session=session)
    assert c.poll(journal) == 2
    vim = next(e for e in events(journal) if e.subject == "vim notes.md")
    assert "exit" not in vim.attrs and "duration_ms" not in vim.attrs


def test_finds_the_usual_history_files_under_home(bash_timed: Built, zsh_built: Built,
                                                  fish_built: Built, atuin_built: Built,
                                                  tmp_path: Path, journal: Journal,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    home = tmp_path / "home"
    (home / ".local/share/atuin").mkdir(parents=True)
    shutil.copy(bash_timed.file, home / ".bash_history")
    shutil.copy(zsh_built.file, home / ".zsh_history")
    shutil.copytree(fish_built.home / ".local/share/fish", home / ".local/share/fish")
    db = real.atuin_db(atuin_built.home)
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{db}{suffix}").exists():
            shutil.copy(f"{db}{suffix}", home / f".local/share/atuin/history.db{suffix}")
    (home / "elsewhere").mkdir()
    shutil.copy(zsh_built.file, home / "elsewhere/old_zsh_history")
    c = build_shell_collector(["~/nope/.bash_history", str(home / "elsewhere/old_zsh_history")],
                              home=home)
    with caplog.at_level(logging.WARNING):
        c.poll(journal)
    counts = {s: len(by_shell(journal, s)) for s in ("bash", "zsh", "fish", "atuin")}
    assert counts == {"bash": len(BASH_CMDS), "zsh": 2 * len(ZSH_CMDS),
                      "fish": len(FISH_CMDS), "atuin": len(ATUIN_CMDS)}
    assert "nope/.bash_history" in caplog.text and "does not exist" in caplog.text


# -- restarts, rewrites and damage ----------------------------------------------------


@pytest.mark.parametrize("timestamps", [True, False], ids=["timed", "plain"])
def test_a_restarted_collector_adds_nothing_twice(tmp_path: Path, journal: Journal,
                                                  timestamps: bool) -> None:
    home = tmp_path / "home"
    real.bash_history(home, [f"echo before-{i}" for i in range(5)], timestamps=timestamps)
    assert ShellCollector(home=home).poll(journal) == 5
    assert ShellCollector(home=home).poll(journal) == 0
    real.bash_history(home, ["echo after-restart"], timestamps=timestamps)
    assert ShellCollector(home=home).poll(journal) == 1
    assert [e.subject for e in events(journal)][-1] == "echo after-restart"
    assert len(events(journal)) == 6


def test_a_half_written_command_waits_until_it_is_complete(zsh_built: Built, tmp_path: Path,
                                                           journal: Journal) -> None:
    home = tmp_path / "home"
    real.bash_history(home, ["echo one"], timestamps=False)
    zsh = home / ".zsh_history"
    shutil.copy(zsh_built.file, zsh)
    c = ShellCollector(home=home)
    assert c.poll(journal) == 1 + len(ZSH_CMDS)
    with (home / ".bash_history").open("ab") as fh:
        fh.write(b"echo half")
    with zsh.open("ab") as fh:
        fh.write(b": 1795650000:0;echo first line\\\n")  # continued on a line not yet written
    assert c.poll(journal) == 0
    with (home / ".bash_history").open("ab") as fh:
        fh.write(b"-done\n")
    with zsh.open("ab") as fh:
        fh.write(b"echo second line\n")
    assert c.poll(journal) == 2
    assert {e.subject for e in events(journal)[-2:]} == {
        "echo half-done", "echo first line\necho second line"}


@pytest.mark.parametrize("how", ["bash trims it", "emptied in place", "replaced",
                                 "rewritten in place"])
@pytest.mark.parametrize("timestamps", [True, False], ids=["timed", "plain"])
def test_truncated_or_rotated_history_is_not_collected_twice(
        tmp_path: Path, journal: Journal, how: str, timestamps: bool) -> None:
    home = tmp_path / "home"
    file = real.bash_history(home, [f"echo old-{i}" for i in range(10)], timestamps=timestamps)
    c = ShellCollector(home=home)
    assert c.poll(journal) == 10
    size, inode = file.stat().st_size, file.stat().st_ino
    new = ["echo new-1", "echo new-2"]
    kept = b"".join(file.read_bytes().splitlines(keepends=True)[-6 if timestamps else -3:])
    if how == "emptied in place":
        file.write_bytes(b"")
    elif how == "replaced":  # e.g. a rotation: the last commands kept, in a new file
        (home / "rotated.tmp").write_bytes(kept)
        os.replace(home / "rotated.tmp", file)
        assert file.stat().st_ino != inode
    elif how == "rewritten in place":  # same inode, and it ends up bigger than before
        file.write_bytes(kept)
        new = [f"echo new-{n} {'x' * 100}" for n in (1, 2)]
    # bash itself trims the file to HISTFILESIZE lines when it exits
    real.bash_history(home, new, timestamps=timestamps,
                      histfile_size=7 if how == "bash trims it" else 100_000)
    if how == "rewritten in place":
        assert file.stat().st_ino == inode and file.stat().st_size > size
    else:
        assert file.stat().st_size < size
    assert c.poll(journal) == 2
    subjects = [e.subject for e in events(journal)]
    assert subjects == [f"echo old-{i}" for i in range(10)] + new


def test_a_repeated_last_command_does_not_confuse_where_a_trimmed_history_resumes(
        tmp_path: Path, journal: Journal) -> None:
    home = tmp_path / "home"
    old = [f"echo old-{i:02d}" for i in range(39)] + ["ls"]
    file = real.bash_history(home, old, timestamps=False, histfile_size=40)
    c = ShellCollector(home=home)
    assert c.poll(journal) == 40
    size = file.stat().st_size
    # bash trims the file to 40 lines; the longer new lines leave it bigger, and only the
    # bytes before the old end, not the repeated `ls` alone, tell where reading stopped
    new = ["echo a new command that is much longer than the old ones", "ls"]
    real.bash_history(home, new, timestamps=False, histfile_size=40)
    assert file.stat().st_size > size and not file.read_text().startswith("echo old-00")
    assert c.poll(journal) == 2
    assert [e.subject for e in events(journal)] == old + new


@pytest.mark.timeout(60)
def test_corrupt_atuin_db_and_unreadable_files_are_logged_and_skipped(
        tmp_path: Path, journal: Journal, caplog: pytest.LogCaptureFixture) -> None:
    home = tmp_path / "home"
    real.bash_history(home, ["echo still collected"], timestamps=False)
    db = home / ".local/share/atuin/history.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(random.Random(7).randbytes(64 * 1024))
    (home / "a-directory").mkdir()
    os.mkfifo(home / "a-fifo")  # opening it would block until someone writes
    c = build_shell_collector(["~/a-directory", "~/a-fifo"], home=home)
    with caplog.at_level(logging.WARNING, logger="collectors.shell"):
        assert c.poll(journal) == 1
    assert "history.db" in caplog.text and "atuin database" in caplog.text
    assert "a-directory" in caplog.text and "a-fifo" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="collectors.shell"):
        assert c.poll(journal) == 0
    assert caplog.text == ""  # warned once, not every few seconds


def test_locked_atuin_db_is_read_from_a_copy(atuin_built: Built, tmp_path: Path,
                                             journal: Journal) -> None:
    home = copy_home(atuin_built, tmp_path / "home")
    db = real.atuin_db(home)
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(sqlite3.OperationalError):  # a plain read-only open fails
            probe = sqlite3.connect(db.as_uri() + "?mode=ro", uri=True, timeout=0.1)
            try:
                probe.execute("SELECT count(*) FROM history").fetchone()
            finally:
                probe.close()
        ShellCollector(home=home).poll(journal)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert [e.subject for e in by_shell(journal, "atuin")] == ATUIN_CMDS


KILLED_POLL = """
import sys
from pathlib import Path
from collectors.shell import ShellCollector
from daemon.intake.journal import Journal
ShellCollector(home=Path(sys.argv[2]), batch_size=100).poll(Journal(Path(sys.argv[1])))
print("finished")
"""


def test_kill_9_mid_collection_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    n = 20_000
    home = tmp_path / "home"
    # plain bash: no times, so only the cursor keeps a re-read from storing lines twice
    real.bash_history(home, [f": command-{i}" for i in range(n)], timestamps=False)
    path = tmp_path / "journal.sqlite3"
    watcher = Journal(path)
    target = random.randint(n // 10, n * 8 // 10)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_POLL, str(path), str(home)],
                            cwd=Path(__file__).parents[2], stdout=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while watcher.counts()["total"] < target and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    at_kill = watcher.counts()["total"]
    assert target <= at_kill < n, "the poll finished before it could be killed"
    assert ShellCollector(home=home).poll(watcher) == n - at_kill
    subjects = [e.subject for e in events(watcher)]
    assert len(subjects) == n and subjects == [f": command-{i}" for i in range(n)]
    watcher.close()
