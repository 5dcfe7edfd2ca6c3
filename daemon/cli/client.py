"""Talk to a running daemon over its Unix socket (the CLI's fast path)."""

from __future__ import annotations

from typing import Any

import httpx

from daemon.config import Config
from daemon.errors import DaemonUnavailable, PermanentError


class DaemonRefused(PermanentError, ValueError):
    """The daemon answered with a 4xx/5xx error; the message is its own."""


def daemon_call(cfg: Config, method: str, path: str, params: dict[str, Any] | None = None,
                json: Any = None, timeout: float = 120.0, missing: str = "",
                busy_is_unavailable: bool = True) -> Any:
    """Call `path` on the running daemon over its Unix socket with its token; return the
    JSON answer. Raise DaemonUnavailable if none runs (`missing` adds what to do then) or,
    with `busy_is_unavailable`, when it answers 503 (the caller may then do the work
    itself); otherwise DaemonRefused with the daemon's own error message."""
    if not cfg.socket_path.exists() or not cfg.token_path.exists():
        raise DaemonUnavailable(f"no daemon socket at {cfg.socket_path}"
                                + (f": {missing}" if missing else ""))
    token = cfg.token_path.read_text().strip()
    transport = httpx.HTTPTransport(uds=str(cfg.socket_path))
    try:
        with httpx.Client(transport=transport, base_url="http://localhost",
                          timeout=timeout) as client:
            resp = client.request(method, path, params=params, json=json,
                                  headers={"Authorization": f"Bearer {token}"})
    except httpx.TransportError as exc:
        raise DaemonUnavailable(f"the daemon at {cfg.socket_path} did not answer: {exc}") from exc
    if resp.status_code >= 400:
        try:
            message = str(resp.json()["error"]["message"])
        except Exception:
            message = resp.text
        if resp.status_code == 503 and busy_is_unavailable:
            raise DaemonUnavailable(message)
        raise DaemonRefused(message)
    return resp.json()


def daemon_get(cfg: Config, path: str, params: dict[str, Any] | None = None,
               timeout: float = 120.0) -> Any:
    """GET `path` from the daemon; raise DaemonUnavailable if none is running."""
    return daemon_call(cfg, "GET", path, params, timeout=timeout)
