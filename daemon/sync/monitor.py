"""The monitor: probes each sync target on a schedule and keeps its state.

    up        the last probe answered and the last sync (if any) went through
    degraded  the target answers, but the last sync failed or was refused by the guard
    down      the last probe failed (the reason says how); probes back off

While a target is down, probes back off exponentially (interval x 2^(failures-1), capped
at max_backoff_seconds) with jitter (a random 50-100 % of that), so many daemons do not
knock on a recovering server at once. When a probe succeeds, the syncs left pending
(by an outage, a crash or a restart of the daemon) run again, then scheduled ones.
A monitoring failure only logs; it never stops the daemon.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

from daemon.backoff import delay
from daemon.config import Config, SyncTarget
from daemon.sync.guard import Refused
from daemon.sync.service import SyncService
from daemon.sync.transport import masked_url

log = logging.getLogger(__name__)


def backoff(t: SyncTarget, failures: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before probing `t` again after `failures` failed probes in a row."""
    return delay(t.interval_seconds, failures, cap=t.max_backoff_seconds, jitter=rand)


class Monitor:
    def __init__(self, service: SyncService, clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random) -> None:
        self.service = service
        self.clock = clock
        self.rand = rand
        self._due: dict[str, float] = {}
        self._last_run: dict[tuple[str, str], float] = {}
        self._trouble: dict[str, str] = {}  # target -> why it is degraded
        service.monitor = self

    def next_probe_in(self, name: str) -> float | None:
        due = self._due.get(name)
        return None if due is None else round(max(0.0, due - self.clock()), 1)

    def tick(self) -> None:
        """Probe every target that is due; run the scheduler job every second or so."""
        for t in list(self.service.targets.values()):
            if self.clock() >= self._due.get(t.name, 0.0):
                try:
                    self.check(t)
                except Exception as exc:  # never let one target stop the monitor
                    log.warning("sync monitor: %s: %s", t.name, exc)
                    self._due[t.name] = self.clock() + t.interval_seconds

    def check(self, t: SyncTarget) -> str:
        """Probe `t`, update its state, and run its due syncs if it answers. Return the state."""
        state = self.service.state
        try:
            self.service.transport(t).probe()
        except Exception as exc:
            failures = state.target(t.name)["failures"] + 1
            reason = f"{type(exc).__name__}: {exc}"
            if state.set_state(t.name, "down", reason, failures):
                log.warning("sync target %s is down: %s", t.name, reason)
            self._due[t.name] = self.clock() + backoff(t, failures, self.rand)
            return "down"
        was = state.target(t.name)["state"]
        state.set_state(t.name, "up" if t.name not in self._trouble else "degraded",
                        "reachable" if t.name not in self._trouble else self._trouble[t.name],
                        failures=0)
        if was == "down":
            log.warning("sync target %s is back up", t.name)
        self._work(t)
        trouble = self._trouble.get(t.name)
        final = "degraded" if trouble else "up"
        state.set_state(t.name, final, trouble or "reachable", failures=0)
        self._due[t.name] = self.clock() + t.interval_seconds
        return final

    def _work(self, t: SyncTarget) -> None:
        now = self.clock()
        ops = {p["op"]: p["force"] for p in self.service.state.pending(t.name)}
        for op, every in (("push", t.push_every_seconds), ("pull", t.pull_every_seconds)):
            last = self._last_run.get((t.name, op))
            if every > 0 and (last is None or now - last >= every):
                ops.setdefault(op, False)
        for op in ("push", "pull"):
            if op not in ops:
                continue
            fn = self.service.push_target if op == "push" else self.service.pull_target
            try:
                fn(t, ops[op])
                self._trouble.pop(t.name, None)
            except Refused as exc:
                self._trouble[t.name] = f"last {op} refused: {exc}"
            except Exception as exc:
                self._trouble[t.name] = f"last {op} failed: {exc}"
            self._last_run[(t.name, op)] = now


def start_sync(cfg: Config, engine: Any, service: Any, scheduler: Any) -> SyncService:
    """In the daemon: attach a SyncService to the MemoryService (the /v1/sync routes and
    status use it) and, when targets are configured, schedule the monitor's probes."""
    sync = SyncService(cfg, engine, journal=getattr(service, "journal", None))
    service.sync = sync
    # nothing is mid-put at start: what a crash left aside here is an orphan
    sync.sweep(None, None)
    for t in sync.targets.values():
        sync.sweep(t, None)
    if sync.targets:
        monitor = Monitor(sync)
        tick = min([1.0, *(t.interval_seconds for t in sync.targets.values())])

        def job() -> None:
            try:
                monitor.tick()
            except Exception as exc:  # a monitoring failure only logs
                log.warning("sync monitor failed: %s (will retry)", exc)

        scheduler.add_job(job, "interval", seconds=max(tick, 0.2), max_instances=1,
                          coalesce=True, id="sync-monitor")
        log.info("sync: monitoring %s", ", ".join(f"{t.name} ({masked_url(t.url)})"
                                                  for t in sync.targets.values()))
    return sync
