"""Scoped API tokens: `memoryd token create --scope memory:read --scope complete`.

The admin token stays in <data_dir>/token. Scoped tokens live in <data_dir>/tokens.json
(0600) as SHA-256 hashes only: the secret is shown once, at creation. The daemon re-reads
the file when it changes, so a token created or revoked while it runs takes effect at once.

A token may also be limited to owners (`--users alice,bob`, `--devices laptop`): it reads
only memories and events those devices and users wrote (daemon/owners.py), on every read
path. A token made without them reads its creator's own memories (every device of the
daemon's `[identity] user`): private by default, and a team member shares more only by
saying so (`--users '*'`). `admin` and `sync` tokens move or manage the whole store, so
they read everyone's and cannot be limited. Tokens from before owners existed have no
owner fields and are treated as made without them.
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

from daemon.owners import ANY, Owners, parse_names

PREFIX = "mdt_"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._by_hash: dict[str, frozenset[str]] = {}
        self._owners: dict[str, Owners | None] = {}

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

    def create(self, scopes: list[str], name: str = "", users: str | list[str] | None = None,
               devices: str | list[str] | None = None,
               own_user: str = "") -> tuple[dict[str, Any], str]:
        """Make a token with these scopes, reading the memories of `users` on `devices`
        (`*` or None for devices: any; None for users: `own_user` only, see the module
        doc); return its record and the secret (shown once). Raise ValueError when a
        name is invalid or an admin/sync token is given owners."""
        if not scopes:
            raise ValueError("a token needs at least one --scope")
        whole = sorted(set(scopes) & {"admin", "sync"})
        limit_users, limit_devices = parse_names("user", users), parse_names("device", devices)
        if whole and (limit_users is not None or limit_devices is not None):
            raise ValueError(f"a token with the {whole[0]} scope reads the whole store; "
                             "drop --users/--devices, or make a separate memory:read token")
        if users is None and not whole:
            if not own_user:  # never silently everyone's: the caller names the default
                raise ValueError("say whose memories the token reads: users, or own_user")
            limit_users = parse_names("user", own_user)
        secret = PREFIX + secrets.token_urlsafe(32)
        with self._lock:
            rows = self._read()
            tid = secrets.token_hex(4)
            row = {"id": tid, "name": name or tid, "scopes": sorted(set(scopes)),
                   "sha256": digest(secret), "created": round(time.time(), 3),
                   **Owners(devices=limit_devices, users=limit_users).as_json()}
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

    def name(self, secret: str) -> str | None:
        """The name of a presented scoped token (for records of who asked), or None."""
        want = digest(secret)
        try:
            rows = self._read()
        except ValueError:
            return None
        return next((str(r["name"]) for r in rows if r.get("sha256") == want), None)

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
                self._owners = {r["sha256"]: _owners(r) for r in rows}
                self._mtime = mtime
        return self._by_hash.get(digest(secret))

    def owners(self, secret: str) -> Owners | None:
        """Whose memories a presented token may read (call after `scopes`): None when
        its record names no owners (a token from before owners: the caller decides)."""
        return self._owners.get(digest(secret))


def _owners(row: dict[str, Any]) -> Owners | None:
    if "users" not in row and "devices" not in row:
        return None
    try:
        return Owners(devices=parse_names("device", row.get("devices") or [ANY]),
                      users=parse_names("user", row.get("users") or [ANY]))
    except ValueError:  # a hand-edited, broken record reads nobody's memories
        return Owners(devices=(), users=())
