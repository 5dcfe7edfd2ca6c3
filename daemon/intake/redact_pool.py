"""Redaction of large batches in worker processes, alongside the journal's inserts.

Redaction is pure Python and takes most of a backfill's time (about twice the insert's);
one process runs it on one core. For a batch of `LARGE` events or more, the journal
hands its events in chunks to a small pool of processes (spawned on the first large
batch, then reused) and inserts each chunk's rows as they come back, while the pool
redacts the next chunks. Smaller batches (a live file save, a command) are redacted in
the journal's own process: a round trip to a worker would cost more than it saves.

The rows are the same either way: both paths call `event_row`. A function a worker
cannot import (a lambda) is never sent; any failure of the pool (a worker killed) falls
back to redacting in process and retires the pool, so a batch is never lost to it. The
pool is one per process, shared by the journals opened in it; its workers stop when the
process exits.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any

from collectors.base import Event, attrs_json
from daemon.intake.redact import redact as redact_one
from daemon.intake.redact import redact_attrs, redact_each
from daemon.owners import owned_id

log = logging.getLogger(__name__)

LARGE = 256  # events in a batch before it goes to the pool
RETRY = 8  # batches: the slower way is timed again every RETRY-th large batch
CHUNK = 100  # events per task: small enough for the first rows to come back soon

Row = tuple[object, ...]
Redact = Callable[[str], str]
# what a worker receives per event: id, ts, source, kind, subject, title, text, attrs
Fields = tuple[str, float, str, str, str, str, str, dict[str, Any]]


def event_row(redact: Redact | None, owner: str, now: float, f: Fields) -> Row:
    """The journal row of one event: its id carrying the owner, subject, title, text and
    attrs redacted."""
    eid, ts, source, kind, subject, title, text, attrs = f
    if owner:
        eid = owned_id(owner, eid)
    if redact is None:
        return (eid, ts, source, kind, subject, title, text, attrs_json(attrs), now, eid)
    if redact is redact_one:
        subject, title, text = redact_each([subject, title, text])
    else:
        subject, title, text = redact(subject), redact(title), redact(text)
    return (eid, ts, source, kind, subject, title, text,
            attrs_json(redact_attrs(attrs, redact)) if attrs else "{}", now, eid)


def fields(ev: Event) -> Fields:
    return (ev.id, ev.ts.timestamp(), ev.source, ev.kind, ev.subject, ev.title, ev.text,
            ev.attrs)


def _rows(redact: Redact, owner: str, now: float, chunk: list[Fields]) -> list[Row]:
    return [event_row(redact, owner, now, f) for f in chunk]


def _follow_parent(parent: int) -> None:
    """In a worker: exit when the journal's process is gone (killed with SIGKILL, its
    queues never close: the worker holds both ends)."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="follow-parent", daemon=True).start()


def _warm(redact: Redact) -> bool:
    redact("warm up: key=abc")  # builds the rules (imports detect-secrets) once per worker
    return True


class RedactPool:
    """A lazily started process pool for one redaction function."""

    def __init__(self, redact: Redact, workers: int) -> None:
        self.redact = redact
        self.workers = workers
        self._pool: Any = None
        self._ready: Future[bool] | None = None
        self._retired = False
        self.sent = 0  # chunks redacted by the workers (for the tests and the benchmark)
        self._cost: dict[bool, float | None] = {True: None, False: None}  # s/event, averaged
        self._batches = 0

    @property
    def retired(self) -> bool:
        return self._retired

    def usable(self, n: int) -> bool:
        """True if a batch of `n` events should go to the pool; starts it the first time
        (that batch is still redacted in process while the workers import). Once both
        ways have been timed, the faster one is taken, with the other tried again every
        `RETRY` batches: workers only help while the machine has a core to spare."""
        if self._retired or n < LARGE:
            return False
        if self._pool is None:
            self._start()
            return False
        if self._ready is None or not self._ready.done():
            return False
        if (exc := self._ready.exception()) is not None:
            self._retire(exc)
            return False
        self._batches += 1
        pooled, alone = self._cost[True], self._cost[False]
        if pooled is None or alone is None:
            return pooled is None
        faster = pooled <= alone
        return faster if self._batches % RETRY else not faster

    def timed(self, pooled: bool, n: int, seconds: float) -> None:
        """Record how long a batch of `n` events took to redact and store, each way."""
        if n < LARGE:
            return
        per = seconds / n
        was = self._cost[pooled]
        self._cost[pooled] = per if was is None else was + (per - was) / 3

    def _start(self) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        try:
            # spawn: the daemon has threads (a fork would copy their locks mid-use)
            self._pool = ProcessPoolExecutor(self.workers,
                                             mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_follow_parent, initargs=(os.getpid(),))
            self._ready = self._pool.submit(_warm, self.redact)
        except (OSError, RuntimeError) as exc:
            self._retire(exc)

    def rows(self, events: Sequence[Event], owner: str, now: float) -> Iterator[list[Row]]:
        """The rows of `events` in their order, chunk by chunk, as the pool finishes them
        (every chunk is sent now); a chunk the pool fails on is redacted here."""
        chunks = [[fields(e) for e in events[i:i + CHUNK]] for i in range(0, len(events), CHUNK)]
        futures: list[Future[list[Row]] | None] = []
        for chunk in chunks:
            try:
                futures.append(None if self._retired else
                               self._pool.submit(_rows, self.redact, owner, now, chunk))
            except Exception as exc:  # a broken pool: redact here instead
                self._retire(exc)
                futures.append(None)
        return self._collect(chunks, futures, owner, now)

    def _collect(self, chunks: list[list[Fields]], futures: list[Future[list[Row]] | None],
                 owner: str, now: float) -> Iterator[list[Row]]:
        """Chunks in order. While the next one is not back, this process redacts the last
        chunk no worker has taken yet (on a busy machine the workers may get little CPU:
        the batch is then never slower than redacting it all here)."""
        done: dict[int, list[Row]] = {}
        last = len(chunks) - 1
        for i, chunk in enumerate(chunks):
            fut = futures[i]
            while i not in done and fut is not None and not self._retired:
                if fut.done():
                    try:
                        done[i] = fut.result()
                        self.sent += 1
                    except Exception as exc:  # the pool failed, not the data
                        self._retire(exc)
                    break
                while last > i and not _cancel(futures[last]):
                    last -= 1  # taken by a worker (or already redacted here)
                if last > i:
                    done[last] = _rows(self.redact, owner, now, chunks[last])
                    futures[last] = None
                    last -= 1
                else:
                    wait([fut], return_when=FIRST_COMPLETED)
            rows = done.pop(i, None)
            yield rows if rows is not None else _rows(self.redact, owner, now, chunk)

    def _retire(self, exc: BaseException) -> None:
        if not self._retired:
            log.warning("redacting in the journal's process from now on: the redaction "
                        "pool failed (%s: %s)", type(exc).__name__, exc)
        self._retired = True
        self.close()

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _cancel(fut: Future[list[Row]] | None) -> bool:
    """True if no worker will run `fut`'s chunk now (it is this process's to redact)."""
    return fut is not None and fut.cancel()


def _sendable(redact: Redact) -> bool:
    """A function a worker can import by name (a lambda or closure cannot be sent)."""
    try:
        pickle.dumps(redact)
    except (pickle.PicklingError, AttributeError, TypeError):
        return False
    return True


def default_workers() -> int:
    """2 processes where there are 2 cores or more; none on one core."""
    cores = os.cpu_count() or 1
    return 2 if cores > 1 else 0


_POOLS: dict[tuple[Redact, int], RedactPool] = {}


def pool_for(redact: Redact, workers: int | None = None) -> RedactPool | None:
    """The process's pool for `redact` (one per process, started on the first large batch
    and kept: a journal opened again reuses it); None when redaction stays in process
    (`workers` 0, one core, or a function a worker cannot import)."""
    n = default_workers() if workers is None else workers
    if n < 1 or not _sendable(redact):
        return None
    pool = _POOLS.get((redact, n))
    if pool is None or pool.retired:
        pool = _POOLS[(redact, n)] = RedactPool(redact, n)
    return pool
