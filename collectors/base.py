"""The contracts every collector shares: `Event`, `Batch`, `Collector`, `Sink`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable


def utc(ts: datetime | float) -> datetime:
    """Normalize a timestamp (aware datetime or epoch seconds) to an aware UTC datetime."""
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            raise ValueError("naive datetime: say which zone it is in before it enters memoryd")
        return ts.astimezone(UTC)
    return datetime.fromtimestamp(ts, UTC)


def event_id(source: str, subject: str, ts: datetime, extra: str = "") -> str:
    """A stable id: the same observation always hashes to the same id, so replays dedupe."""
    key = "\x1f".join([source, subject, ts.isoformat(), extra])
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass(frozen=True)
class Event:
    id: str
    ts: datetime  # aware, UTC
    source: str  # files, browser, shell, ...
    kind: str  # file.modified, browser.visit, shell.command, ...
    subject: str  # path, URL, command
    title: str = ""
    text: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def new(cls, *, ts: datetime | float, source: str, kind: str, subject: str,
            title: str = "", text: str = "", attrs: dict[str, Any] | None = None,
            id_extra: str = "") -> Event:
        when = utc(ts)
        return cls(id=event_id(source, subject, when, id_extra), ts=when, source=source,
                   kind=kind, subject=subject, title=title, text=text, attrs=dict(attrs or {}))

    def attrs_json(self) -> str:
        return attrs_json(self.attrs)


_ENCODER = json.JSONEncoder(sort_keys=True, default=str)
# The C encoder behind it, made once: JSONEncoder.encode builds a new one on every call,
# most of what encoding a small attrs dict costs (the journal encodes every event's).
# Without a circular-reference check: attrs are JSON-shaped trees, and a cycle still
# ends in a RecursionError.
_MAKE = getattr(json.encoder, "c_make_encoder", None)
_C_ENCODE = (_MAKE(None, str, json.encoder.encode_basestring_ascii, None, ": ", ", ", True,
                   False, True) if _MAKE is not None else None)


def attrs_json(value: dict[str, Any]) -> str:
    """`value` as JSON, keys sorted, what JSON cannot say as its str()."""
    if _C_ENCODE is None:
        return _ENCODER.encode(value)
    return "".join(_C_ENCODE(value, 0))


@dataclass(frozen=True)
class Batch:
    """Events and the cursor that follows them; the journal commits both at once."""

    collector: str
    events: list[Event]
    cursor: str | None = None  # None leaves the stored cursor as it is


class Sink(Protocol):
    """Where collectors hand batches; the daemon's intake journal is one."""

    def append(self, batch: Batch) -> int: ...

    def known(self, ids: list[str]) -> set[str]: ...

    def cursor(self, collector: str) -> str | None: ...


@runtime_checkable
class Collector(Protocol):
    """A source of events. `poll` catches up from the cursor; `start`/`stop` push live ones."""

    name: str
    poll_seconds: float  # how often the daemon calls poll()

    def poll(self, sink: Sink) -> int:
        """Collect everything new since the sink's cursor; return how many events were new."""
        ...

    def start(self, sink: Sink) -> None: ...

    def stop(self) -> None: ...
