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
from typing import Protocol
from urllib.parse import urlsplit

from daemon.config import SyncTarget
from daemon.errors import InvalidRequest, PermanentError, RetryableError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
TMP_SUFFIX = ".part-tmp"


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


def tmp_name(name: str) -> str:
    return f".{name}.{os.getpid()}{TMP_SUFFIX}"


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
