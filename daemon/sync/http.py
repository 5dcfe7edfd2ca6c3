"""Another memoryd as a target (`http://127.0.0.1:7078`), through its /v1/sync routes.

The peer keeps pushed files in its own spool folder (a DirTransport, so the same atomic
replace), checks each file's SHA-256 before renaming it into place, and merges a pushed
snapshot into its own store when asked (`after_push`); before a pull it publishes a fresh
snapshot of its own memory into that spool (`before_pull`). The peer's token comes from
`token_file` or `token_env`; every request has connect/read timeouts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from daemon.config import SyncTarget
from daemon.errors import ConfigError
from daemon.sync.transport import (
    TargetFull,
    TargetRejected,
    TransportError,
    check_name,
    masked_url,
    sha256,
)


class HttpTransport:
    def __init__(self, target: SyncTarget) -> None:
        self._base = target.url
        self.url = masked_url(target.url)  # for messages and logs
        self.name = target.name
        seconds = target.timeout_seconds
        self.timeout = httpx.Timeout(seconds, connect=min(5.0, seconds))
        # Export and import run the peer's store (its worker may have to start first):
        # they may read for longer than a file transfer, still never forever.
        self.work_timeout = httpx.Timeout(max(60.0, 10 * target.timeout_seconds),
                                          connect=min(5.0, target.timeout_seconds))
        self._token = _token(target)

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self._token}", **kw.pop("headers", {})}
        timeout = kw.pop("timeout", self.timeout)
        try:
            with httpx.Client(base_url=self._base.rstrip("/"), timeout=timeout) as client:
                resp = client.request(method, path, headers=headers, **kw)
        except httpx.HTTPError as exc:
            raise TransportError(f"{self.url}: {type(exc).__name__}: {exc}") from exc
        if resp.status_code < 400:
            return resp
        try:
            message = resp.json()["error"]["message"]
        except Exception:
            message = resp.text[:300]
        if resp.status_code == 404 and method == "GET":
            raise FileNotFoundError(message)
        if resp.status_code in (401, 403):
            raise TargetRejected(f"{self.url} refused the token ({message}); set token_file "
                                 f"or token_env of sync target {self.name!r} to the peer's token")
        if resp.status_code == 413:
            raise TargetRejected(f"{self.url}: {message}")
        if resp.status_code == 507:
            raise TargetFull(f"{self.url}: {message}")
        if resp.status_code == 409:  # the peer's guard refused what we pushed
            from daemon.sync.guard import Refused

            raise Refused(f"the peer refused the snapshot: {message}")
        raise TransportError(f"{self.url}: HTTP {resp.status_code}: {message}")

    def probe(self) -> None:
        self._request("GET", "/v1/sync/probe")

    def get(self, name: str) -> bytes:
        return self._request("GET", f"/v1/sync/files/{check_name(name)}").content

    def put(self, name: str, data: bytes) -> None:
        self._request("PUT", f"/v1/sync/files/{check_name(name)}", content=data,
                      headers={"X-Memoryd-Sha256": sha256(data),
                               "Content-Type": "application/octet-stream"})

    def list(self) -> list[str]:
        return list(self._request("GET", "/v1/sync/files").json()["files"])

    def delete(self, name: str) -> None:
        self._request("DELETE", f"/v1/sync/files/{check_name(name)}")

    def before_pull(self) -> None:
        """Ask the peer to publish a snapshot of its own memory into its spool."""
        self._request("POST", "/v1/sync/export", timeout=self.work_timeout)

    def after_push(self, force: bool = False) -> dict[str, Any]:
        """Ask the peer to merge what we just pushed (its own guard checks it again)."""
        return dict(self._request("POST", "/v1/sync/import", timeout=self.work_timeout,
                                  params={"force": "true" if force else "false"}).json())


def _token(target: SyncTarget) -> str:
    if target.token_env:
        token = os.environ.get(target.token_env, "").strip()
        if not token:
            raise ConfigError(f"sync target {target.name!r}: environment variable "
                              f"{target.token_env} is empty; export the peer's token there")
        return token
    if target.token_file:
        path = Path(target.token_file).expanduser()
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"sync target {target.name!r}: cannot read token_file {path}: "
                              f"{exc.strerror}") from exc
    raise ConfigError(f"sync target {target.name!r} ({masked_url(target.url)}) needs "
                      "token_file or token_env: the peer daemon's token (its <data_dir>/token)")
