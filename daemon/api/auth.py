"""Who is asking: the one bearer-token parser, and the credential check every route shares.

A request presents one of three credentials:
  - the admin token (<data_dir>/token) as `Authorization: Bearer …`: every scope;
  - a scoped token (daemon/api/scoped_tokens.py) the same way: the scopes it was made
    with, limited to the owners it names;
  - the status page's session cookie (daemon/api/sessions.py): the admin scope, but only
    from the status page's own origin. SameSite=Strict does not separate ports, so any
    page on 127.0.0.1 gets the cookie attached; a state-changing request with the cookie
    must therefore prove it comes from the page itself (`Origin` equal to the daemon's
    own, and `Sec-Fetch-Site: same-origin` when the browser sends it).

The ASGI guard (daemon/api/guard.py) identifies the caller before any body byte is read
and leaves the answer in the request's state; the routes' scope dependency reads it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from daemon.api.scoped_tokens import TokenStore
from daemon.api.sessions import COOKIE, SessionStore
from daemon.owners import EVERYONE, Owners

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ALL_SCOPES = frozenset({"memory:read", "memory:raw", "memory:write", "complete", "sync",
                        "admin"})


@dataclass(frozen=True)
class Caller:
    """An identified caller: how it proved itself, what it may do, whose memories it reads."""
    via: str  # "admin token" | "token" | "session"
    scopes: frozenset[str]
    owners: Owners

    def may(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


class SessionOriginRefused(Exception):
    """A state-changing request carried the session cookie from another origin."""


def bearer(value: str | bytes | None) -> str | None:
    """Given an `Authorization` header's value, return the bearer token in it, or None
    (no header, another scheme, an empty token)."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    scheme, _, given = text.strip().partition(" ")
    given = given.strip()
    return given if scheme.lower() == "bearer" and given else None


def cookie(header: str | bytes | None, name: str) -> str | None:
    """The value of cookie `name` in a `Cookie` header, or None."""
    if not header:
        return None
    text = header.decode("latin-1") if isinstance(header, bytes) else header
    for part in text.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"') or None
    return None


def same_origin(method: str, headers: Mapping[str, str]) -> bool:
    """Whether a request may use the session cookie: always for a read; for a
    state-changing method only when the browser says it comes from this very origin
    (the scheme and the Host the request was sent to)."""
    if method.upper() in SAFE_METHODS:
        return True
    site = headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        return False
    origin = headers.get("origin")
    if origin is None:
        return site == "same-origin"
    return origin == "http://" + headers.get("host", "")


class Authenticator:
    """Identify callers from their request headers (lower-case names)."""

    def __init__(self, admin_token: str, tokens: TokenStore, own_user: str,
                 sessions: SessionStore | None = None) -> None:
        self._admin = admin_token
        self.tokens = tokens
        self._own_user = own_user
        self.sessions = sessions if sessions is not None else SessionStore()

    def identify(self, method: str, headers: Mapping[str, str]) -> Caller | None:
        """The caller, or None when no credential is valid. Raise SessionOriginRefused
        when the only credential is a session cookie sent from another origin."""
        given = bearer(headers.get("authorization"))
        if given is not None:
            return self._token(given)
        if self.sessions.valid(cookie(headers.get("cookie"), COOKIE)):
            if not same_origin(method, headers):
                raise SessionOriginRefused()
            return Caller("session", ALL_SCOPES, EVERYONE)
        return None

    def _token(self, given: str) -> Caller | None:
        if secrets.compare_digest(given.encode(), self._admin.encode()):
            return Caller("admin token", ALL_SCOPES, EVERYONE)
        granted = self.tokens.scopes(given)
        if granted is None:
            return None
        owners = self.tokens.owners(given)
        if owners is None and not granted & {"admin", "sync"}:  # made before owners
            owners = Owners(users=(self._own_user,))
        return Caller("token", granted, owners or EVERYONE)


def may_read_raw(request: object) -> bool:
    """Whether the request's caller (set by the scope check) may read raw events:
    memory:raw or admin. A caller the check did not see reads memories only."""
    caller = getattr(getattr(request, "state", None), "caller", None)
    return isinstance(caller, Caller) and caller.may("memory:raw")


def header_map(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI headers as a dict of lower-case names (the last of repeated ones; the guard
    refuses repeated Host headers before this matters)."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw}
