"""Being a good citizen on the user's machine: heavy jobs (summaries, digests) wait while
the CPU is busy with the user's own work or the laptop runs on battery.

A job is deferred, never dropped: its events stay in the journal. So that a machine that
is always busy (or never plugged in) still gets its memory written, a job runs anyway
once it has been deferred for `max_defer_seconds`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil

log = logging.getLogger(__name__)


def busy_reason(max_cpu_percent: float, yield_on_battery: bool,
                sample_seconds: float = 0.5) -> str | None:
    """Return why a heavy job should wait now ("on battery", "CPU 93 % busy"), or None.
    CPU is the whole machine's use over `sample_seconds` (100 = every core busy);
    `max_cpu_percent` 0 never waits for the CPU."""
    if yield_on_battery:
        try:
            battery = psutil.sensors_battery()
        except (OSError, NotImplementedError, AttributeError):
            battery = None
        if battery is not None and not battery.power_plugged:
            return "on battery"
    if max_cpu_percent > 0:
        used = others_cpu_percent(sample_seconds)
        if used >= max_cpu_percent:
            return f"other programs keep the CPU {used:.0f} % busy"
    return None


def _tree_cpu() -> float:
    me = psutil.Process()
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + getattr(t, "children_user", 0.0) + \
            getattr(t, "children_system", 0.0)
    return total


def _busy() -> float:
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def others_cpu_percent(sample_seconds: float = 0.5) -> float:
    """The share of the machine's CPU (100 = every core) that processes other than this
    one and its children used over the next `sample_seconds`: memoryd's own work (an
    indexing worker) never makes it wait for itself."""
    t0, busy0, ours0 = time.monotonic(), _busy(), _tree_cpu()
    time.sleep(sample_seconds)
    wall = time.monotonic() - t0
    others = max(0.0, (_busy() - busy0) - (_tree_cpu() - ours0))
    return min(100.0, others / (wall * (psutil.cpu_count() or 1)) * 100)


class Polite:
    """Wrap a heavy job so it skips its turn while `check()` gives a reason, at most
    `max_defer_seconds` in a row."""

    def __init__(self, name: str, job: Callable[[], Any], check: Callable[[], str | None],
                 max_defer_seconds: float = 1800.0) -> None:
        self.name, self.job, self.check = name, job, check
        self.max_defer_seconds = max_defer_seconds
        self.deferred_since: float | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        with self._lock:
            reason = self.check()
            now = time.monotonic()
            if reason is not None:
                if self.deferred_since is None:
                    self.deferred_since = now
                    log.info("%s waits: %s", self.name, reason)
                if now - self.deferred_since < self.max_defer_seconds:
                    return None
                log.info("%s has waited %.0f s (%s): running it anyway", self.name,
                         now - self.deferred_since, reason)
            self.deferred_since = None
        return self.job()
