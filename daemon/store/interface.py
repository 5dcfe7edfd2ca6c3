"""The engine's interface, described once: what the pipeline, the service layer and the
router may ask of the heavy half of memoryd.

`daemon.store.engine.Engine` implements it in-process; `daemon.store.worker.WorkerEngine`
forwards every method in `ENGINE_METHODS` to an `Engine` in the worker process by name.
This module is light on purpose: the daemon's main process imports it, and must not
import LanceDB, pyarrow or the models.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Protocol

from collectors.base import Event
from daemon.owners import EVERYONE, Owners
from daemon.recall.hits import Hit


class MemoryEngine(Protocol):
    """Index, summarize, compact and read memory; every method's arguments and result
    cross a process pipe, so they are plain picklable values."""

    # -- the pipeline (daemon/pipeline/steps.py) --
    def index(self, events: list[Event]) -> int: ...

    def summarize(self, events: list[Event]) -> dict[str, Any]: ...

    def summarize_many(self, chunks: list[list[Event]]) -> list[dict[str, Any]]: ...

    def compact(self, max_digests: int = 0, past_only: bool = False) -> dict[str, Any]: ...

    def prune_events(self, older_than_days: int) -> int: ...

    # -- the read path (daemon/recall/); `owners` restricts whose rows are read, `raw`
    # False reads memories only (a token without memory:raw) --
    def search(self, query: str, k: int = 10, source: str | None = None,
               since: datetime | None = None, until: datetime | None = None,
               kind: str | None = None, project: str | None = None,
               level: str | None = None, now: datetime | None = None,
               devices: tuple[str, ...] | None = None,
               users: tuple[str, ...] | None = None, raw: bool = True) -> list[Hit]: ...

    def recent(self, limit: int = 20, source: str | None = None,
               owners: Owners = EVERYONE) -> list[Hit]: ...

    def timeline(self, since: datetime | None, until: datetime | None,
                 source: str | None = None, owners: Owners = EVERYONE) -> list[Hit]: ...

    def digest(self, period: str = "day", day: date | None = None,
               owners: Owners = EVERYONE) -> dict[str, Any]: ...

    def context(self, query: str, budget_tokens: int, now: datetime | None = None,
                owners: Owners = EVERYONE, raw: bool = True,
                fresh: tuple[Hit, ...] = ()) -> dict[str, Any]: ...

    def forget(self, since: datetime | None = None, until: datetime | None = None,
               source: str | None = None, query: str | None = None,
               dry_run: bool = False, owners: Owners = EVERYONE) -> dict[str, Any]: ...

    # -- upkeep and sync --
    def optimize(self) -> None: ...

    def export_memories(self, context_rows: int = 30) -> dict[str, Any]: ...

    def import_memories(self, segments: list[bytes], adm: Any = None) -> dict[str, Any]: ...

    def counts(self, owners: Owners = EVERYONE) -> dict[str, int]: ...

    def status(self) -> dict[str, Any]: ...

    # -- the router's way to the embedded models --
    def complete_local(self, name: str, messages: list[Any],
                       params: dict[str, Any]) -> Any: ...

    def embed_local(self, name: str, texts: list[str]) -> list[list[float]]: ...


# The names a forwarder may send over the pipe: exactly the protocol's methods.
ENGINE_METHODS: frozenset[str] = frozenset(
    name for name, value in vars(MemoryEngine).items()
    if callable(value) and not name.startswith("_"))
