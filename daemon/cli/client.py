"""Talk to a running daemon over its Unix socket (the CLI's fast path)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.config import Config
from daemon.errors import DaemonUnavailable, PermanentError

if TYPE_CHECKING:
    import httpx


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
    resp = socket_request(cfg.socket_path, method, path, token=token, params=params, json=json,
                          timeout=timeout)
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


def socket_request(socket_path: Path, method: str, path: str, *, token: str | None = None,
                   params: dict[str, Any] | None = None, json: Any = None,
                   timeout: float = 120.0) -> httpx.Response:
    """One HTTP request to the daemon over its Unix socket (with the token when given);
    raise DaemonUnavailable when nothing answers there. The one socket client: the CLI,
    `memoryd open`/`tray` and the service supervision all call through it."""
    import httpx  # here: `memoryd run` imports this module's callers for their parsers

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket_path)),
                          base_url="http://localhost", timeout=timeout) as client:
            return client.request(method, path, params=params, json=json, headers=headers)
    except (httpx.TransportError, OSError) as exc:
        raise DaemonUnavailable(f"the daemon at {socket_path} did not answer: {exc}") from exc
