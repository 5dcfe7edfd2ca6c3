"""How long to wait after failures in a row: one formula for every retry loop (the
pipeline's summaries, the router's passes over its chain, the sync monitor's probes).

The wait doubles with each failure after the first, from `base`, up to `cap`; with
`jitter` (a source of random numbers in [0, 1)) it is a random 50-100 % of that, so many
daemons retrying one target do not retry in step."""

from __future__ import annotations

import math
from collections.abc import Callable

_MAX_DOUBLINGS = 64  # 2**64 times any base is past every cap; keeps the float finite


def delay(base: float, failures: int, cap: float = math.inf,
          jitter: Callable[[], float] | None = None) -> float:
    """Given `failures` failed tries in a row, return the seconds to wait before the next.

    No failure yet waits `base` (no jitter): the ordinary interval."""
    if failures <= 0:
        return base
    wait = min(cap, base * 2.0 ** min(failures - 1, _MAX_DOUBLINGS))
    return wait * (0.5 + jitter() / 2) if jitter is not None else wait
