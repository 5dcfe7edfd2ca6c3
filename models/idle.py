"""Lazy loading with unload after idle: heavy models hold memory only while used."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class IdleHolder(Generic[T]):
    """Holds an object made by `load`; drops it after `idle_seconds` without use.

    `lease()` is a context manager giving the loaded object (loading it first if needed);
    while any lease is open the object is never unloaded, and idleness counts from the
    last lease's end. `idle_seconds <= 0` keeps the object forever.
    """

    def __init__(self, name: str, load: Callable[[], T], idle_seconds: float) -> None:
        self.name = name
        self._load = load
        self._idle = idle_seconds
        self._obj: T | None = None
        self._last = 0.0
        self._lock = threading.RLock()
        self._timer: threading.Timer | None = None
        self._leases = 0
        self._quiet = False  # the last unload was a routine release: its reload logs at debug

    @property
    def loaded(self) -> bool:
        return self._obj is not None

    @contextmanager
    def lease(self) -> Iterator[T]:
        with self._lock:
            if self._obj is None:
                started = time.monotonic()
                self._obj = self._load()
                log.log(logging.DEBUG if self._quiet else logging.INFO, "loaded %s in %.1f s",
                        self.name, time.monotonic() - started)
                self._quiet = False
                self._arm()
            self._leases += 1
            obj = self._obj
        try:
            yield obj
        finally:
            with self._lock:
                self._leases -= 1
                self._last = time.monotonic()

    def _arm(self) -> None:
        if self._idle <= 0:
            return
        self._timer = threading.Timer(self._idle / 4 if self._idle > 4 else self._idle, self._check)
        self._timer.daemon = True
        self._timer.start()

    def _check(self) -> None:
        with self._lock:
            if self._obj is None:
                return
            if self._leases == 0 and time.monotonic() - self._last >= self._idle:
                self.unload(reason=f"idle for {self._idle:.0f} s")
            else:
                self._arm()

    def unload(self, reason: str = "asked", quiet: bool = False) -> None:
        """Drop the object unless a lease is open; `quiet`: a routine release, logged (with
        the reload after it) at debug level."""
        with self._lock:
            if self._leases:
                log.debug("not unloading %s: in use", self.name)
                return
            if self._obj is not None:
                close = getattr(self._obj, "close", None)
                if callable(close):
                    close()
                self._obj = None
                self._quiet = quiet
                log.log(logging.DEBUG if quiet else logging.INFO, "unloaded %s (%s)",
                        self.name, reason)
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
