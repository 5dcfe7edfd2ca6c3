"""Opening the store's tables safely when several daemons do it at once.

Three daemons started at the same instant on one new bucket all find no table, all
create it, all build its full-text index, and (after an upgrade) all migrate it. Here
each of those is idempotent and retried (daemon/store/retry.py): a table another daemon
created first is opened, an index another daemon built first is used, and a migration
runs in one daemon only, under a lease the others wait for (`MigrationLock`), after
which they open the migrated table. A table whose schema is newer than this memoryd is
refused before anything is written (`StoreTooNew`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.errors import PermanentError, StoreTooNew
from daemon.store.filters import id_filters
from daemon.store.retry import retrying

log = logging.getLogger(__name__)
MIGRATION_WAIT_SECONDS = 900.0  # how long a daemon waits for another's migration
LEASE_STALE_SECONDS = 600.0  # a migration lease older than this was left by a crash


def schema_meta(table: Any) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}


def schema_version(table: Any) -> str:
    return schema_meta(table).get("memoryd.schema_version", "")


def too_new(found: str, mine: str) -> bool:
    """Whether schema version `found` was written by a newer memoryd than `mine`."""
    try:
        return int(found) > int(mine)
    except ValueError:
        return False


def refuse_newer(name: str, found: str, mine: str, location: str) -> None:
    if too_new(found, mine):
        raise StoreTooNew(
            f"the store's {name} table at {location} has schema version {found}, written "
            f"by a newer memoryd; this one reads version {mine} and writes nothing to it. "
            "Upgrade memoryd on this machine (the newer daemons keep working)")


def has_index(table: Any, column: str) -> bool:
    return any(column in (getattr(i, "columns", None) or ()) for i in table.list_indices())


def ensure_fts(table: Any, location: str) -> None:
    """Give `table` its full-text index over `doc` unless it has one: two daemons that
    build it at once end with one index (the loser's commit conflicts, its retry finds
    the winner's index and uses it)."""
    from lancedb.index import FTS

    def build() -> None:
        if has_index(table, "doc"):
            return
        table.create_index("doc", config=FTS(base_tokenizer="simple", stem=False,
                                             remove_stop_words=False), replace=False)
        log.info("built the full-text index of the %s table at %s", table.name, location)

    retrying("index creation", build, where=location, refresh=table.checkout_latest,
             also=("already exists",))


def create_or_open(db: Any, name: str, schema: Any, location: str, mine: str) -> Any:
    """The table `name`, created with `schema` when no daemon has made it yet; one of a
    newer schema than `mine` is refused before anything is written to it. Its full-text
    index is the caller's (`ensure_fts`), once any migration is done: an index built on
    a table another daemon is rewriting would make that rewrite's commit conflict."""
    def attempt() -> Any:
        if name in db.list_tables().tables:
            try:
                return db.open_table(name)
            except Exception:
                if not _never_committed(location, name):
                    raise
                # a creation that never committed (the disk filled up, a crash): the
                # folder holds no version, so no data; make the table again
                folder = Path(location) / f"{name}.lance"
                log.warning("the store's %s table was never fully created (no committed "
                            "version in %s); creating it again", name, folder)
                shutil.rmtree(folder, ignore_errors=True)
        made = db.create_table(name, schema=schema, exist_ok=True)
        log.info("created (or found just made) the %s table at %s", name, location)
        return made

    # listed but "not found": another writer's table whose first commit is in flight
    table = retrying("table creation", attempt, where=location,
                     also=("already exists", "was not found"))
    refuse_newer(name, schema_version(table), mine, location)
    return table


UNCOMMITTED_STALE_SECONDS = 5.0  # a first commit in flight takes well under this


def _never_committed(location: str, name: str) -> bool:
    """True when the local table folder `name` has no committed version and was begun
    long enough ago that no creation is still in flight (never on object storage)."""
    if "://" in location:
        return False
    folder = Path(location) / f"{name}.lance"
    if not folder.is_dir() or any(folder.glob("_versions/*.manifest")):
        return False
    return time.time() - folder.stat().st_mtime > UNCOMMITTED_STALE_SECONDS


@dataclass
class MigrationLock:
    """One migration at a time per table: a lease file (local store) or an object
    written with If-None-Match: * (object storage, whose conditional writes
    daemon/store/objectstore.py checks at open). `s3` is an S3Settings or None."""

    location: str
    s3: Any = None

    @contextlib.contextmanager
    def held(self, name: str, done: Callable[[], bool]) -> Iterator[bool]:
        """Hold the lease for `name`'s migration; yield False instead (without the lease)
        once `done()` says another daemon finished it."""
        if self.s3 is None:
            path = Path(self.location) / f".migrating-{name}.lock"
            with open(path, "a+") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                try:
                    yield not done()
                finally:
                    fcntl.flock(f, fcntl.LOCK_UN)
            return
        client = self.s3.client()
        key = "/".join(p for p in (self.s3.prefix, f".memoryd-migrating-{name}") if p)
        mine = json.dumps({"by": f"{os.uname().nodename}:{os.getpid()}",
                           "nonce": uuid.uuid4().hex, "at": time.time()})
        deadline = time.monotonic() + MIGRATION_WAIT_SECONDS
        while not self._take(client, key, mine):
            if done():
                yield False
                return
            if time.monotonic() > deadline:
                raise PermanentError(
                    f"another daemon has been migrating the store's {name} table at "
                    f"{self.location} for over {MIGRATION_WAIT_SECONDS:.0f} s; check the "
                    "other daemons' logs, then start this one again")
            time.sleep(1.0)
        try:
            yield not done()
        finally:
            with contextlib.suppress(Exception):
                client.delete_object(Bucket=self.s3.bucket, Key=key)

    def _take(self, client: Any, key: str, body: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            client.put_object(Bucket=self.s3.bucket, Key=key, Body=body.encode(),
                              IfNoneMatch="*")
            return True
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status not in (409, 412):
                raise
        try:  # held: by a live migration, or left by one that crashed?
            held = json.loads(client.get_object(Bucket=self.s3.bucket, Key=key)["Body"].read())
        except Exception:  # released meanwhile: try again
            return False
        if time.time() - float(held.get("at", 0)) > LEASE_STALE_SECONDS:
            log.warning("the migration lease %s (%s) is stale: taking it over", key,
                        held.get("by"))
            with contextlib.suppress(Exception):
                client.delete_object(Bucket=self.s3.bucket, Key=key)
        return False


DEDUPE_PASSES = 4  # reads of the copies after a delete that a compaction made miss


def dedupe(table: Any, ids: list[str]) -> int:
    """Keep one row of each id in `ids` that is stored more than once; return how many
    copies went. Two processes inserting one new id at once are meant to conflict on
    the primary key, but Lance 0.x can let both land when a compaction commits between
    them; the writer that sees two copies right after its own commit removes one.

    The copies are deleted by row address, and a compaction committed meanwhile moves
    them: the delete then misses (an old address is never reused, so it never hits
    another row). So the copies are read again after each delete, until none is left
    over. Every writer keeps the copy at the highest address it sees: two writers never
    keep different ones of the copies both see, so one copy always stays."""
    removed = 0
    for _ in range(DEDUPE_PASSES):
        extra = _extra_copies(table, ids)
        if not extra:
            break
        log.warning("removing %d duplicate rows left by concurrent writers", len(extra))
        table.delete(f"_rowid IN ({', '.join(map(str, extra))})")
        removed += len(extra)
    return removed


def _extra_copies(table: Any, ids: list[str]) -> list[int]:
    """The row addresses of every copy of `ids` but the one at the highest address."""
    extra: list[int] = []
    for _, where in id_filters(ids):
        found = (table.search().where(where).with_row_id(True).select(["id"])
                 .limit(None).to_arrow().to_pylist())
        keep: dict[str, int] = {}
        for r in found:
            keep[r["id"]] = max(keep.get(r["id"], -1), int(r["_rowid"]))
        extra += [int(r["_rowid"]) for r in found if int(r["_rowid"]) != keep[r["id"]]]
    return extra
