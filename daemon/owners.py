"""Whose memory is whose: the writer's identity and a reader's owner restriction.

Every event and memory this daemon writes to the store carries `device` and `user`
(`[identity]`, defaulting to the hostname and the login name), so several daemons can
share one store (a team bucket, one person's four machines) and still tell their rows
apart. A reader is restricted by `Owners`: the devices and users whose rows it may see
(None: any). The search filters a caller asks for (`--device`, `?user=`) and the
restriction of the token it presented are intersected here, once, and the result
becomes part of every LanceDB filter on the read path.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from daemon.errors import ConfigError, InvalidRequest

ANY = "*"
# A name safe in a filter, a path and a log line: letters, digits and . _ @ + -
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")


def owner_key(device: str, user: str) -> str:
    """The owner as it enters event ids and digest ids: `user@device` ("" if unknown)."""
    return f"{user}@{device}" if device and user else ""


def owned_id(owner: str, event_id: str) -> str:
    """An event's id in the journal and the store: the collector's stable id (source,
    subject, time) hashed with its owner (`owner_key`), so two devices that touch one path
    in one second keep two rows. No owner: the collector's id as it is."""
    if not owner:
        return event_id
    key = f"{owner}\x1f{event_id}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(key).hexdigest()[:32]


class OwnerForbidden(InvalidRequest):
    """The caller asked for rows its token may not read (the API answers 403)."""


def check_name(kind: str, value: str) -> str:
    """Return `value` if it is a valid device or user name; raise InvalidRequest saying why."""
    if not _NAME.match(value):
        raise InvalidRequest(f"{kind} {value!r} is not a valid name: use 1-64 letters, digits "
                             "and . _ @ + - (starting with a letter or digit)")
    return value


def default_device() -> str:
    """This machine's short hostname, cleaned to a valid name."""
    host = socket.gethostname().split(".")[0] or "localhost"
    return re.sub(r"[^A-Za-z0-9._@+-]", "-", host).lstrip("._@+-")[:64] or "localhost"


def default_user() -> str:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no USER and no passwd entry (a bare container)
        name = f"uid{os.getuid()}"
    return re.sub(r"[^A-Za-z0-9._@+-]", "-", name).lstrip("._@+-")[:64] or f"uid{os.getuid()}"


def resolve_identity(device: str, user: str) -> tuple[str, str]:
    """Given the `[identity]` values ("" = default), return (device, user).
    Raise ConfigError naming the key when one is not a valid name."""
    out = []
    for key, value, fallback in (("device", device, default_device),
                                 ("user", user, default_user)):
        try:
            out.append(check_name(key, value.strip()) if value.strip() else fallback())
        except ValueError as exc:
            raise ConfigError(f"identity.{key}: {exc}") from None
    return out[0], out[1]


def parse_names(kind: str, value: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """A list of names from `alice,bob` (or a list of such): None for nothing given or
    `*` (anyone); raise InvalidRequest on an invalid name."""
    if value is None:
        return None
    parts = [value] if isinstance(value, str) else list(value)
    names = [n.strip() for p in parts for n in p.split(",") if n.strip()]
    if not names or ANY in names:
        return None
    return tuple(sorted({check_name(kind, n) for n in names}))


@dataclass(frozen=True)
class Owners:
    """The devices and users whose rows a reader sees; None means any."""

    devices: tuple[str, ...] | None = None
    users: tuple[str, ...] | None = None

    @property
    def everyone(self) -> bool:
        return self.devices is None and self.users is None

    def narrow(self, devices: tuple[str, ...] | None,
               users: tuple[str, ...] | None) -> Owners:
        """These owners further restricted to `devices` and `users` (a caller's filters).
        Raise OwnerForbidden when the caller asks only for owners outside this set."""
        out = []
        for kind, mine, asked in (("devices", self.devices, devices),
                                  ("users", self.users, users)):
            if asked is None:
                out.append(mine)
                continue
            if mine is None:
                out.append(asked)
                continue
            both = tuple(n for n in asked if n in mine)
            if not both:
                raise OwnerForbidden(f"this token may read only the memories of {kind} "
                                     f"{', '.join(mine)}; make one with more (`memoryd token "
                                     f"create --{kind} ...`)")
            out.append(both)
        return Owners(devices=out[0], users=out[1])

    def allows(self, device: str, user: str) -> bool:
        return ((self.devices is None or device in self.devices)
                and (self.users is None or user in self.users))

    def where(self) -> str | None:
        """The LanceDB filter for these owners (None: no restriction)."""
        parts = []
        for column, names in (("device", self.devices), ("user", self.users)):
            if names is not None:  # an empty tuple matches nothing
                parts.append(f"{column} IN ({', '.join(_sql(n) for n in names)})"
                             if names else "false")
        return " AND ".join(parts) or None

    def as_json(self) -> dict[str, list[str]]:
        return {"devices": list(self.devices) if self.devices is not None else [ANY],
                "users": list(self.users) if self.users is not None else [ANY]}


EVERYONE = Owners()


def _sql(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def identity(cfg: object) -> tuple[str, str]:
    """(device, user) of a Config: `load_config` resolved them; a Config built in code
    gets the defaults here."""
    ident = getattr(cfg, "identity", None)
    return resolve_identity(getattr(ident, "device", ""), getattr(ident, "user", ""))


def whose(owners: Owners | None, device: str | Iterable[str] | None,
          user: str | Iterable[str] | None) -> Owners:
    """A reader's restriction (`owners`, None: everyone) narrowed to the devices and users
    it asked for (`laptop`, `alice,bob`). Raise ValueError on a bad name, OwnerForbidden
    when it asks only for owners it may not read."""
    return (owners or EVERYONE).narrow(parse_names("device", device), parse_names("user", user))


def request_owners(request: object) -> Owners:
    """The owners the request's token may read (set by the API's scope check; the admin
    token and the status page's session read everyone's)."""
    state = getattr(request, "state", None)
    return getattr(state, "owners", None) or EVERYONE


def journal_owner(cfg: object) -> str:
    """The owner whose ids a Config's journal writes (`owner_key` of its identity)."""
    return owner_key(*identity(cfg))
