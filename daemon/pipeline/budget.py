"""How much of the machine the pipeline's model work may take, and how fast it goes.

`CpuBudget` holds summaries and digests back so that, averaged over each job and the
pause after it, the daemon's process tree (daemon + worker) uses at most
`[compaction] max_cpu_percent` of the machine (100 = every core). A job is never cut
short: the pause after it is as long as its CPU cost requires.

`Progress` keeps each stage's recent throughput, for a backlog's rate and time to done.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psutil

from daemon.pipeline.citizen import _tree_cpu

log = logging.getLogger(__name__)
RATE_WINDOW = 300.0  # seconds of history behind a stage's rate


class Charge:
    """What a job under `CpuBudget.spend` owes; `waive()` when it used no model."""

    def __init__(self) -> None:
        self.waived = False

    def waive(self) -> None:
        self.waived = True


class CpuBudget:
    def __init__(self, percent: float, cores: int | None = None) -> None:
        self.percent = max(0.0, float(percent))
        self.cores = cores or psutil.cpu_count() or 1
        self.hold_until = 0.0
        self._samples: deque[tuple[float, float]] = deque(maxlen=64)
        self._lock = threading.Lock()

    def ready(self) -> bool:
        """Whether a model job may start now."""
        self._sample()
        return self.percent <= 0 or time.monotonic() >= self.hold_until

    @contextmanager
    def spend(self, enabled: bool = True) -> Iterator[Charge]:
        """Run a job; afterwards hold the next one back for what it cost, unless the job
        waived its charge (it asked no model: what the tree spent meanwhile was others'
        work, indexing and searches, which this budget does not hold back)."""
        t0, c0 = time.monotonic(), _tree_cpu()
        charge = Charge()
        try:
            yield charge
        finally:
            if enabled and self.percent > 0 and not charge.waived:
                wall, cpu = time.monotonic() - t0, _tree_cpu() - c0
                hold = max(0.0, cpu / (self.percent / 100 * self.cores) - wall)
                self.hold_until = time.monotonic() + hold
                if hold:
                    log.debug("a model job took %.1f CPU s in %.1f s; the next waits %.1f s "
                              "(budget %.0f %%)", cpu, wall, hold, self.percent)

    def _sample(self) -> None:
        with self._lock:
            self._samples.append((time.monotonic(), _tree_cpu()))

    def used_percent(self, window: float = 60.0) -> float | None:
        """The daemon tree's CPU share over about the last `window` seconds."""
        self._sample()
        with self._lock:
            now, cpu = self._samples[-1]
            older = [s for s in self._samples if now - s[0] >= window] or [self._samples[0]]
            t0, c0 = older[-1]
        if now - t0 < 1.0:
            return None
        return round((cpu - c0) / ((now - t0) * self.cores) * 100, 1)


class Progress:
    def __init__(self) -> None:
        self._done: dict[str, deque[tuple[float, int]]] = {}
        self._lock = threading.Lock()
        self._started = time.monotonic()

    def record(self, stage: str, n: int) -> None:
        with self._lock:
            self._done.setdefault(stage, deque(maxlen=4096)).append((time.monotonic(), n))

    def rate(self, stage: str) -> float:
        """Events per second over the last RATE_WINDOW seconds (0.0: none done)."""
        now = time.monotonic()
        with self._lock:
            recent = [(t, n) for t, n in self._done.get(stage, ()) if now - t <= RATE_WINDOW]
        if not recent:
            return 0.0
        span = max(1.0, now - max(self._started, now - RATE_WINDOW))
        return sum(n for _, n in recent) / span

    def report(self, backlog: dict[str, int]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for stage, left in backlog.items():
            rate = self.rate(stage)
            eta = 0.0 if not left else (left / rate if rate else None)
            out[stage] = {"backlog": left, "rate_per_s": round(rate, 2),
                          "eta_seconds": None if eta is None else round(eta)}
        return out
