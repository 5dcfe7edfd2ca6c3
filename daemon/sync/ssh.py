"""An SSH target (`ssh://user@host:port/path`), through OpenSSH's own `sftp` in batch mode.

Why the OpenSSH binaries and not paramiko: they read the user's ~/.ssh/config, keys,
agent, certificates and known_hosts exactly as the user's own `ssh` does (ProxyJump,
hardware keys), with no new dependency; an sftp-only account on the server is enough.
Host keys are always checked (`StrictHostKeyChecking=yes`, `BatchMode=yes`: nothing
ever prompts or accepts a new key), and keepalives (`ServerAliveInterval`) make a frozen
server fail the transfer within about `timeout_seconds` instead of hanging it.
One snapshot takes a dozen sftp batches; they share one SSH connection (ControlMaster,
kept 60 s after the last use, in a 0700 folder of this user) instead of a handshake each.
"""

from __future__ import annotations

import builtins
import logging
import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from daemon.config import SyncTarget
from daemon.sync.transport import (
    TMP_SUFFIX,
    TargetFull,
    TargetRejected,
    TransportError,
    check_name,
    masked_url,
    orphaned,
    tmp_name,
)

log = logging.getLogger(__name__)
_REJECTED = ("Host key verification failed", "Permission denied", "REMOTE HOST IDENTIFICATION",
             "No ED25519 host key", "No RSA host key", "No ECDSA host key",
             "host key for", "Too many authentication failures")


class SshTransport:
    def __init__(self, target: SyncTarget) -> None:
        u = urlsplit(target.url)
        if not u.hostname:
            raise TargetRejected(f"sync target {target.name!r}: {masked_url(target.url)!r} "
                                 "names no host")
        self.url = masked_url(target.url)
        self.host = u.hostname
        self.user = unquote(u.username) if u.username else None
        self.port = u.port
        path = unquote(u.path) or "."
        # ssh://host/~/memoryd is relative to the login folder, like scp's host:memoryd
        self.root = path[3:] or "." if path.startswith("/~/") else path
        self.timeout = max(1.0, target.timeout_seconds)
        alive = max(1, round(self.timeout / 3))
        self.opts = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                     "-o", f"ConnectTimeout={max(1, round(self.timeout))}",
                     "-o", f"ServerAliveInterval={alive}", "-o", "ServerAliveCountMax=3"]
        if target.identity_file:
            self.opts += ["-i", str(Path(target.identity_file).expanduser())]
        if target.known_hosts_file:
            files = [str(Path(target.known_hosts_file).expanduser()), "~/.ssh/known_hosts"]
            self.opts += ["-o", "UserKnownHostsFile=" + " ".join(files)]
        if self.port:
            self.opts += ["-P", str(self.port)]
        control = Path(tempfile.gettempdir()) / f"memoryd-ssh-{os.getuid()}"
        control.mkdir(mode=0o700, exist_ok=True)
        if control.stat().st_uid != os.getuid():  # someone else's folder: never share it
            raise TargetRejected(f"{control} belongs to another user; remove it")
        os.chmod(control, 0o700)
        self.opts += ["-o", "ControlMaster=auto", "-o", f"ControlPath={control}/%C",
                      "-o", "ControlPersist=60"]

    def _dest(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def _path(self, name: str) -> str:
        return _quote(f"{self.root.rstrip('/')}/{name}" if self.root != "/" else f"/{name}")

    def _sftp(self, commands: list[str], payload_bytes: int = 0) -> str:
        """Run sftp commands in one batch; return stdout. Raise on any failed command."""
        script = "\n".join(commands) + "\n"
        # Keepalives notice a frozen server; this cap only guards against an sftp that
        # never returns at all (a slow link gets 50 kB/s before it counts as stuck).
        cap = self.timeout * 4 + payload_bytes / 50_000
        try:
            proc = subprocess.run(["sftp", "-b", "-", *self.opts, self._dest()],
                                  input=script, capture_output=True, text=True, timeout=cap)
        except subprocess.TimeoutExpired as exc:
            raise TransportError(f"{self.url}: no answer within {cap:.0f} s") from exc
        except FileNotFoundError as exc:
            raise TargetRejected("the OpenSSH client (sftp) is not installed; install "
                                 "openssh-client") from exc
        if proc.returncode != 0:
            err = " ".join((proc.stderr or proc.stdout).split())[-500:]
            if any(s in err for s in _REJECTED):
                raise TargetRejected(
                    f"{self.url}: {err}. Check the key and that the host is in known_hosts "
                    f"(connect once with `ssh -p {self.port or 22} {self._dest()}`)")
            if "not found" in err or "No such file" in err:
                raise FileNotFoundError(err)
            if "No space left" in err or "quota" in err.lower():
                raise TargetFull(f"{self.url}: no space left on the target ({err})")
            raise TransportError(f"{self.url}: sftp exited {proc.returncode}: {err}")
        return proc.stdout

    def probe(self) -> None:
        self._sftp([f"cd {_quote(self.root)}", "ls -1a"])

    def get(self, name: str) -> bytes:
        check_name(name)
        with tempfile.TemporaryDirectory(prefix="memoryd-sftp-") as tmp:
            local = Path(tmp) / name
            self._sftp([f"get {self._path(name)} {_quote(str(local))}"])
            return local.read_bytes()

    def put(self, name: str, data: bytes) -> None:
        check_name(name)
        aside = tmp_name(name)
        with tempfile.TemporaryDirectory(prefix="memoryd-sftp-") as tmp:
            local = Path(tmp) / name
            local.write_bytes(data)
            try:
                out = self._sftp([f"put {_quote(str(local))} {self._path(aside)}",
                                  f"ls -ln {self._path(aside)}"], payload_bytes=len(data))
                size = _size_from_ls(out, aside)
                if size != len(data):
                    if size is not None and size < len(data):
                        raise TargetFull(f"{self.url}: {name} arrived with {size} of "
                                         f"{len(data)} bytes (target full?)")
                    raise TransportError(f"{self.url}: {name} arrived with {size} bytes, "
                                         f"sent {len(data)}")
                # OpenSSH's sftp renames with posix-rename when the server has it, which
                # replaces the old file atomically.
                self._sftp([f"rename {self._path(aside)} {self._path(name)}"])
            except (TransportError, FileNotFoundError) as exc:
                self._cleanup(aside)
                if "Failure" in str(exc) and not isinstance(exc, TargetFull):
                    # sftp-server reports a full disk as a bare "Failure"
                    raise TargetFull(f"{exc} (often a full disk on the target)") from exc
                raise

    def _cleanup(self, aside: str) -> None:
        try:
            self._sftp([f"-rm {self._path(aside)}"])
        except Exception as exc:  # the target is likely down; the next put overwrites it
            log.debug("could not remove %s on %s: %s", aside, self.url, exc)

    def list(self) -> list[str]:
        out = self._sftp([f"cd {_quote(self.root)}", "ls -1a"])
        names = []
        for line in out.splitlines():
            line = line.strip()
            if not line or line.startswith("sftp>") or line in (".", ".."):
                continue
            name = os.path.basename(line)
            if not name.endswith(TMP_SUFFIX) and not name.startswith("."):
                names.append(name)
        return sorted(names)

    def delete(self, name: str) -> None:
        self._sftp([f"-rm {self._path(check_name(name))}"])

    def sweep(self) -> builtins.list[str]:
        """Remove this machine's files written aside by puts whose process is gone."""
        out = self._sftp([f"cd {_quote(self.root)}", "ls -1a"])
        names = [os.path.basename(line.strip()) for line in out.splitlines()
                 if line.strip().endswith(TMP_SUFFIX) and not line.startswith("sftp>")]
        gone = [n for n in names if orphaned(n)]
        if gone:
            self._sftp([f"-rm {self._path(n)}" for n in gone])
        return gone

    def delete_many(self, names: Sequence[str]) -> None:
        if names:
            self._sftp([f"-rm {self._path(check_name(n))}" for n in names])


def _quote(path: str) -> str:
    if '"' in path or "\n" in path:
        raise TargetRejected(f"paths with quotes or newlines are not supported: {path!r}")
    return f'"{path}"'


def _size_from_ls(out: str, name: str) -> int | None:
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 9 and not line.startswith("sftp>") and parts[-1].endswith(name):
            try:
                return int(parts[4])
            except ValueError:
                return None
    return None
