"""The Transport seam: four calls over a flat folder of named files.

    probe()          raise TransportError if the target cannot be reached or written
    get(name)        the bytes of one file; raise FileNotFoundError if it is absent
    put(name, data)  atomic replace: write aside, verify, then rename over the old one
    list()           the names present (files being written aside are not listed)
    delete(name)     remove one file (old generations); absent is fine

A new transport is one module with a class having these methods and one line in
`open_transport`.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import time
from typing import Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

from daemon.config import SyncTarget
from daemon.errors import InvalidRequest, PermanentError, RetryableError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
TMP_SUFFIX = ".part-tmp"


# Query parameters that carry credentials (pre-signed URLs, API keys in links).
_SECRET_PARAM = re.compile(r"(?i)^(x-amz-(signature|credential|security-token)|sig|signature|"
                           r"token|access_token|api[_-]?key|key|secret|password|passwd|pwd|"
                           r"auth|code|client_secret|sas|se?ssion)$")


def masked_url(url: str) -> str:
    """Given a target's URL, return it fit to print and log: a password in it (and any
    credential-bearing query parameter) replaced by `***`; the user name and the rest
    kept, so the user still sees which target it is."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user, has_password, _ = userinfo.partition(":")
            netloc = f"{user}:***@{host}" if has_password else netloc
        query = "&".join(
            f"{k}=***" if _SECRET_PARAM.match(unquote(k)) and sep else f"{k}{sep}{v}"
            for k, sep, v in (p.partition("=") for p in parts.query.split("&") if p))
        if (netloc, query) == (parts.netloc, parts.query):
            return url  # nothing to hide (and `dir:///x` stays as written)
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:  # not a URL we can take apart: say nothing of it
        return "<an unreadable URL>"


class TransportError(RetryableError):
    """The target did not answer or failed mid-way; the sync stays pending and is retried."""


class TargetFull(TransportError):
    """The target has no space left. Nothing was replaced; free space there."""


class TargetRejected(PermanentError):
    """The target refused us (auth, host key, permissions): retrying will not help."""


class Transport(Protocol):
    url: str

    def probe(self) -> None: ...

    def get(self, name: str) -> bytes: ...

    def put(self, name: str, data: bytes) -> None: ...

    def list(self) -> list[str]: ...

    def delete(self, name: str) -> None: ...


def check_name(name: str) -> str:
    """Return `name` if it is a plain file name; raise ValueError otherwise (no paths)."""
    if not NAME.match(name) or name.endswith(TMP_SUFFIX) or ".." in name:
        raise InvalidRequest(f"{name!r} is not a valid sync file name")
    return name


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _machine() -> str:
    try:
        mid = open("/etc/machine-id").read().strip()
    except OSError:
        mid = ""
    return hashlib.sha256(f"{socket.gethostname()}/{mid}".encode()).hexdigest()[:8]


MACHINE = _machine()  # which machine wrote a file aside, so it can tell its own orphans
TMP = re.compile(r"^\.(.+)\.(?:([0-9a-f]{8})-)?(\d+)" + re.escape(TMP_SUFFIX) + "$")
STALE_SECONDS = 3600.0  # a file aside this old is an orphan whoever wrote it


def tmp_name(name: str) -> str:
    return f".{name}.{MACHINE}-{os.getpid()}{TMP_SUFFIX}"


def orphaned(name: str, age: float | None = None) -> bool:
    """True when `name` is a file written aside by a put that can no longer finish: one
    of this machine's whose process is gone (a crash, kill -9), or any older than
    STALE_SECONDS (`age`, where the transport can tell)."""
    m = TMP.match(name)
    if m is None:
        return False
    if age is not None and age > STALE_SECONDS:
        return True
    if m.group(2) != MACHINE:
        return False
    pid = int(m.group(3))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def file_age(mtime: float) -> float:
    return time.time() - mtime


def open_transport(target: SyncTarget) -> Transport:
    """Given a configured target, return its transport; raise ConfigError on a bad URL."""
    from daemon.errors import ConfigError

    scheme = urlsplit(target.url).scheme
    if scheme == "dir":
        from daemon.sync.dir import DirTransport

        return DirTransport(target)
    if scheme == "ssh":
        from daemon.sync.ssh import SshTransport

        return SshTransport(target)
    if scheme in ("http", "https"):
        from daemon.sync.http import HttpTransport

        return HttpTransport(target)
    if scheme == "s3":
        from daemon.sync.s3 import S3Transport

        return S3Transport(target)
    raise ConfigError(f"sync target {target.name!r}: url {target.url!r} must start with "
                      "dir://, ssh://, http(s):// or s3://")
