"""Browser sessions for the status page, started by a one-time login link.

`memoryd open` asks the daemon (with the bearer token) for a login code: random, valid
for LOGIN_TTL seconds and for one use. The browser opens /ui/login?code=…; the daemon
swaps the code for a session cookie (HttpOnly, SameSite=Strict) and redirects to the
clean /ui, so neither the token nor a working code stays in the address bar or history.
A session counts as the admin scope (the user at their own desktop). Sessions live in
the daemon's memory only: a restart logs the browser out, and `memoryd open` logs it in
again.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time

COOKIE = "memoryd_session"
LOGIN_TTL = 60.0
SESSION_TTL = 12 * 3600.0


def _key(secret: str) -> str:
    # Only hashes are kept, so a memory dump does not hand out live credentials.
    return hashlib.sha256(secret.encode()).hexdigest()


class SessionStore:
    def __init__(self, clock: object = time.monotonic) -> None:
        self._clock = clock
        self._codes: dict[str, float] = {}
        self._sessions: dict[str, float] = {}
        self._lock = threading.Lock()

    def _now(self) -> float:
        return float(self._clock())  # type: ignore[operator]

    def _prune(self, now: float) -> None:
        for table in (self._codes, self._sessions):
            for k in [k for k, until in table.items() if until <= now]:
                del table[k]

    def new_login_code(self) -> str:
        code = secrets.token_urlsafe(24)
        with self._lock:
            now = self._now()
            self._prune(now)
            self._codes[_key(code)] = now + LOGIN_TTL
        return code

    def redeem(self, code: str) -> str | None:
        """Given a login code, return a new session id, or None if the code is unknown,
        expired or already used (each code works once)."""
        with self._lock:
            now = self._now()
            until = self._codes.pop(_key(code), None)
            if until is None or until <= now:
                return None
            session = secrets.token_urlsafe(32)
            self._sessions[_key(session)] = now + SESSION_TTL
            return session

    def valid(self, session: str | None) -> bool:
        if not session:
            return False
        with self._lock:
            until = self._sessions.get(_key(session))
            return until is not None and until > self._now()

    def end(self, session: str | None) -> None:
        if session:
            with self._lock:
                self._sessions.pop(_key(session), None)


# One store per daemon process; the API's auth dependency and the status page share it.
