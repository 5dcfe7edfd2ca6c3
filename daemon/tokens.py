"""Scoped API tokens: `memoryd token create --scope memory:read --scope complete`.

The admin token stays in <data_dir>/token. Scoped tokens live in <data_dir>/tokens.json
(0600) as SHA-256 hashes only: the secret is shown once, at creation. The daemon re-reads
the file when it changes, so a token created or revoked while it runs takes effect at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

PREFIX = "mdt_"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._by_hash: dict[str, frozenset[str]] = {}

    def _read(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except ValueError as exc:
            raise ValueError(f"{self.path} is not valid JSON ({exc}); fix or remove it") from None
        return list(data.get("tokens", []))

    def _write(self, rows: list[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"tokens": rows}, fh, indent=1)
        os.replace(tmp, self.path)

    def create(self, scopes: list[str], name: str = "") -> tuple[dict[str, Any], str]:
        """Make a token with these scopes; return its record and the secret (shown once)."""
        if not scopes:
            raise ValueError("a token needs at least one --scope")
        secret = PREFIX + secrets.token_urlsafe(32)
        with self._lock:
            rows = self._read()
            tid = secrets.token_hex(4)
            row = {"id": tid, "name": name or tid, "scopes": sorted(set(scopes)),
                   "sha256": digest(secret), "created": round(time.time(), 3)}
            if any(r["name"] == row["name"] for r in rows):
                raise ValueError(f"a token named {row['name']!r} exists; pick another --name")
            rows.append(row)
            self._write(rows)
        return {k: v for k, v in row.items() if k != "sha256"}, secret

    def list(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "sha256"} for r in self._read()]

    def revoke(self, which: str) -> bool:
        """Revoke the token with this id or name; False if there is none."""
        with self._lock:
            rows = self._read()
            keep = [r for r in rows if which not in (r["id"], r["name"])]
            if len(keep) == len(rows):
                return False
            self._write(keep)
            return True

    def scopes(self, secret: str) -> frozenset[str] | None:
        """The scopes of a presented token, or None if it is not (or no longer) valid."""
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime != self._mtime:
            with self._lock:
                try:
                    rows = self._read() if mtime is not None else []
                except ValueError:
                    rows = []  # a broken file grants nothing
                self._by_hash = {r["sha256"]: frozenset(r["scopes"]) for r in rows}
                self._mtime = mtime
        return self._by_hash.get(digest(secret))
