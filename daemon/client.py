"""Talk to a running daemon over its Unix socket (the CLI's fast path)."""

from __future__ import annotations

from typing import Any

import httpx

from daemon.config import Config
from daemon.errors import DaemonUnavailable


def daemon_get(cfg: Config, path: str, params: dict[str, Any] | None = None,
               timeout: float = 120.0) -> Any:
    """GET `path` from the daemon; raise DaemonUnavailable if none is running."""
    if not cfg.socket_path.exists() or not cfg.token_path.exists():
        raise DaemonUnavailable(f"no daemon socket at {cfg.socket_path}")
    token = cfg.token_path.read_text().strip()
    transport = httpx.HTTPTransport(uds=str(cfg.socket_path))
    try:
        with httpx.Client(transport=transport, base_url="http://localhost",
                          timeout=timeout) as client:
            resp = client.get(path, params=params, headers={"Authorization": f"Bearer {token}"})
    except httpx.TransportError as exc:
        raise DaemonUnavailable(f"the daemon at {cfg.socket_path} did not answer: {exc}") from exc
    if resp.status_code == 503:
        raise DaemonUnavailable(resp.json().get("error", {}).get("message", resp.text))
    if resp.status_code >= 400:
        message = resp.json().get("error", {}).get("message", resp.text)
        raise ValueError(message)
    return resp.json()
