"""One backoff formula for the pipeline's summaries, the router's passes and the sync
monitor's probes: the values each of them waited before they shared it."""

from __future__ import annotations

import math

from daemon.backoff import delay


def test_the_wait_doubles_from_the_base_up_to_the_cap() -> None:
    # the pipeline: 5 s doubling up to 60 s
    assert [delay(5.0, n, cap=60.0) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]
    # the router: no cap, each pass over the chain waits twice the one before
    assert [delay(0.5, n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]


def test_no_failure_waits_the_base_without_jitter() -> None:
    assert delay(30.0, 0, cap=600.0, jitter=lambda: 0.0) == 30.0


def test_jitter_keeps_half_to_all_of_the_wait() -> None:
    # the sync monitor: interval 30 s, cap 600 s, a random 50-100 %
    assert delay(30.0, 3, cap=600.0, jitter=lambda: 0.0) == 60.0
    assert delay(30.0, 3, cap=600.0, jitter=lambda: 0.5) == 90.0
    assert delay(30.0, 10, cap=600.0, jitter=lambda: 1.0) == 600.0


def test_many_failures_stay_finite() -> None:
    assert delay(5.0, 100_000, cap=60.0) == 60.0
    assert math.isfinite(delay(5.0, 100_000))
