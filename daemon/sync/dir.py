"""A directory target: a local folder, a network mount, or a folder that Syncthing or
Dropbox carries elsewhere (`dir:///mnt/share/memoryd`)."""

from __future__ import annotations

import builtins
import errno
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

from daemon.config import SyncTarget
from daemon.sync.transport import (
    TMP_SUFFIX,
    TargetFull,
    TargetRejected,
    TransportError,
    check_name,
    file_age,
    orphaned,
    tmp_name,
)


class DirTransport:
    def __init__(self, target: SyncTarget | None = None, path: Path | None = None) -> None:
        if path is None:
            assert target is not None
            path = Path(unquote(urlsplit(target.url).path)).expanduser()
        self.root = path
        self.url = target.url if target is not None else f"dir://{path}"

    def probe(self) -> None:
        if not self.root.is_dir():
            # An unmounted share looks like a missing folder: never create it, or we
            # would write into the mount point underneath.
            raise TransportError(f"{self.root} does not exist or is not a folder "
                                 "(is the share mounted?)")
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise TargetRejected(f"{self.root} is not writable by this user")

    def get(self, name: str) -> bytes:
        try:
            return (self.root / check_name(name)).read_bytes()
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise TransportError(f"cannot read {self.root / name}: {exc.strerror}") from exc

    def put(self, name: str, data: bytes) -> None:
        final = self.root / check_name(name)
        tmp = self.root / tmp_name(name)
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            if tmp.stat().st_size != len(data) or tmp.read_bytes() != data:
                raise TransportError(f"{tmp} did not read back as written")
            os.replace(tmp, final)
            _fsync_dir(self.root)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise TargetFull(f"no space left in {self.root} for {name} ({len(data)} bytes); "
                                 "free space there, the previous snapshot is untouched") from exc
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise TargetRejected(f"cannot write in {self.root}: {exc.strerror}") from exc
            raise TransportError(f"writing {final} failed: {exc.strerror or exc}") from exc

    def list(self) -> list[str]:
        try:
            return sorted(p.name for p in self.root.iterdir()
                          if p.is_file() and not p.name.endswith(TMP_SUFFIX))
        except OSError as exc:
            raise TransportError(f"cannot list {self.root}: {exc.strerror}") from exc

    def delete(self, name: str) -> None:
        (self.root / check_name(name)).unlink(missing_ok=True)

    def sweep(self) -> builtins.list[str]:
        """Remove files written aside by puts that can never finish (transport.orphaned);
        return their names."""
        gone: builtins.list[str] = []
        try:
            entries = [p for p in self.root.iterdir() if p.name.endswith(TMP_SUFFIX)]
        except OSError:
            return gone
        for p in entries:
            try:
                if orphaned(p.name, file_age(p.stat().st_mtime)):
                    p.unlink()
                    gone.append(p.name)
            except OSError:
                continue  # gone meanwhile, or not ours to remove
        return gone


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
