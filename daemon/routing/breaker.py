"""A circuit breaker per backend: stop sending work to a backend that keeps failing.

    closed ──(N consecutive failures, or a 429 with Retry-After)──▶ open
    open ──(reset time passed)──▶ half-open: exactly one trial call (or health probe)
    half-open ──success──▶ closed        half-open ──failure──▶ open again
"""

from __future__ import annotations

import threading
import time

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class Breaker:
    def __init__(self, failures: int = 3, reset_seconds: float = 15.0) -> None:
        self.threshold = max(1, failures)
        self.reset_seconds = reset_seconds
        self._state = CLOSED
        self._failures = 0
        self._opened = 0.0
        self._cooldown = reset_seconds
        self._trial = False  # a half-open trial call is in flight
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        with self._lock:
            if self._state == OPEN and time.monotonic() >= self._opened + self._cooldown:
                return HALF_OPEN
            return self._state

    def allow(self) -> bool:
        """True if a call may go to the backend now (taking the half-open trial slot)."""
        if self._state == CLOSED:  # the hot path: no lock, no clock
            return True
        with self._lock:
            if self._state == OPEN:
                if time.monotonic() < self._opened + self._cooldown:
                    return False
                self._state = HALF_OPEN
                self._trial = False
            if self._trial:
                return False
            self._trial = True
            return True

    def release(self) -> None:
        """A trial that ended neither in success nor failure (cancelled) frees its slot."""
        with self._lock:
            self._trial = False

    def success(self) -> None:
        if self._state == CLOSED and self._failures == 0:
            return
        with self._lock:
            self._state, self._failures, self._trial = CLOSED, 0, False

    def failure(self, cooldown: float | None = None) -> None:
        with self._lock:
            self._failures += 1
            self._trial = False
            if self._state == HALF_OPEN or self._failures >= self.threshold or cooldown:
                self._state = OPEN
                self._opened = time.monotonic()
                self._cooldown = cooldown if cooldown else self.reset_seconds
