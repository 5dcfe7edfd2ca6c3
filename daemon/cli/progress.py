"""`ingest --once` progress: a bar per stage on a terminal (tqdm), plain lines otherwise
(a log, CI, a pipe), at most one every PLAIN_EVERY seconds a stage plus its last."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

PLAIN_EVERY = 5.0
Show = Callable[[str, int, int], None]


def progress_printer(stream: TextIO | None = None) -> tuple[Show, Callable[[], None]]:
    """Return (show(stage, done, total), close())."""
    out = stream or sys.stderr
    if out.isatty():
        from tqdm import tqdm

        bars: dict[str, Any] = {}

        def bar(stage: str, done: int, total: int) -> None:
            b = bars.get(stage)
            if b is None:
                b = bars[stage] = tqdm(total=total, desc=f"{stage:<9}", unit="ev", file=out,
                                       dynamic_ncols=True)
            b.total = total
            b.n = done
            b.refresh()

        def close() -> None:
            for b in bars.values():
                b.close()

        return bar, close

    last: dict[str, float] = {}

    def line(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - last.get(stage, 0.0) >= PLAIN_EVERY:
            last[stage] = now
            print(f"{stage}: {done}/{total} events", file=out, flush=True)

    return line, lambda: None
