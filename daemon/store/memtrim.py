"""Give an idle process's memory back: freed heap to the OS, clean file pages to the cache.

The resident reader (daemon/store/reader.py) must answer the first search after hours
of idle at once, yet an idle daemon should be small. Most of what it holds is
file-backed: LanceDB's and onnxruntime's native code and the query embedder's weights
(mapped from their file, models/onnx_embed.py). Those pages are the same bytes as the
files on disk; `shed` unmaps them from this process (they stay in the kernel's page
cache, reclaimable, and shared with any other process mapping the same files) and the
next access maps them back with minor faults, milliseconds for the few hundred MB,
or reads them from disk if the kernel reclaimed them meanwhile. Android compacts
cached apps the same way.

`IdleTrim` does the heap part alone, each time a burst of calls ends (the worker and the
reader, daemon/store/worker.py): glibc keeps what a batch freed (a fragmented heap, and
each thread's arena) for the next one, so a worker that indexed a backfill held ~100 MB of
free heap through the hours of summaries after it (bench/README.md).

Only mappings that cannot hold anything of the process's own are dropped: file-backed,
with no private (copy-on-write) page in them, and not writable, or else a file the
caller names as never written through its mapping (onnxruntime maps each weight
read-write but only reads it). Linux only; elsewhere
`shed` gives back the heap where it can and reports nothing dropped.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
MADV_DONTNEED = 4
SMAPS = Path("/proc/self/smaps")
TRIM_EVERY = 10.0  # s: at most one heap trim this often (a trim walks the whole heap)


@dataclass(frozen=True)
class Shed:
    """What one `shed` gave back (kB of resident set)."""
    mappings: int = 0
    file_kb: int = 0  # clean file pages unmapped (still in the page cache)
    rss_before_kb: int = 0
    rss_after_kb: int = 0


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")  # runs ldconfig: once a process
    try:
        return ctypes.CDLL(name, use_errno=True) if name else None
    except OSError:
        return None


def malloc_trim() -> None:
    """Return the C heap's free pages to the OS (glibc; a no-op elsewhere)."""
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is not None:
        trim(0)


def clean_file_mappings(smaps: str, read_only: frozenset[str] = frozenset()
                        ) -> list[tuple[int, int, int]]:
    """(start, end, resident kB) of each mapping in `smaps` (the text of
    /proc/PID/smaps) that is safe to drop: file-backed, resident, with no anonymous
    (copy-on-write) page, and not writable unless its file is among `read_only` (files
    mapped writable that nothing writes to)."""
    out: list[tuple[int, int, int]] = []
    head: tuple[int, int, bool] | None = None
    rss = anon = 0
    for line in [*smaps.splitlines(), "0-0 ---p 0 0:0 0"]:
        first = line.split(None, 5)
        if first and "-" in first[0] and len(first) >= 5 and ":" in first[3]:
            if head is not None and head[2] and rss and not anon:
                out.append((head[0], head[1], rss))
            lo, hi = first[0].split("-")
            path = first[5].strip() if len(first) > 5 else ""
            droppable = (("w" not in first[1] or path in read_only) and path.startswith("/")
                         and not path.endswith("(deleted)") and not path.startswith("/dev/"))
            head, rss, anon = (int(lo, 16), int(hi, 16), droppable), 0, 0
        elif line.startswith("Rss:"):
            rss = int(line.split()[1])
        elif line.startswith("Anonymous:"):
            anon = int(line.split()[1])
    return out


def _status_kb(key: str = "VmRSS:") -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _rss_kb() -> int:
    return _status_kb("VmRSS:")


def _reset_peak() -> bool:
    """Start this process's resident-set high-water mark (VmHWM) again from its current
    resident set (Linux: "5" to /proc/self/clear_refs); False where that cannot be done."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def shed(read_only: frozenset[str] = frozenset()) -> Shed:
    """Trim the heap and unmap this process's clean file pages (see the module doc);
    `read_only`: files mapped writable that nothing here writes to."""
    malloc_trim()
    if not sys.platform.startswith("linux"):
        return Shed()
    libc = _libc()
    try:
        text = SMAPS.read_text()
    except OSError as exc:
        log.debug("cannot read %s: %s", SMAPS, exc)
        return Shed()
    before = _rss_kb()
    n = kb = 0
    if libc is not None:
        libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        for lo, hi, rss in clean_file_mappings(text, read_only):
            if libc.madvise(lo, hi - lo, MADV_DONTNEED) == 0:
                n, kb = n + 1, kb + rss
    return Shed(mappings=n, file_kb=kb, rss_before_kb=before, rss_after_kb=_rss_kb())


class IdleTrim:
    """Gives the C heap's free pages back once a burst of calls has ended: when no call
    is in flight, at most once per `every` seconds, in a thread of its own (never on a
    call's path). A call that starts meanwhile runs as usual.

    It also notes, for each kind of call, the most that one call raised this process's
    resident set above where it started (`rise_mb` in `status`): what a memory figure
    sampled from outside cannot tell, which call a transient peak belongs to. Measured
    for calls that start while none is in flight (overlapping calls share one peak)."""

    def __init__(self, every: float = TRIM_EVERY) -> None:
        self.every = every
        self.trims = 0
        self.freed_kb = 0  # resident set given back by the trims, in all
        self._busy = 0
        self._dirty = False  # calls ended since the last trim
        self._last = -every
        self.rise_kb: dict[str, int] = {}  # call name -> its largest rise of the resident set
        self._cv = threading.Condition()
        threading.Thread(target=self._run, name="heap-trim", daemon=True).start()

    @contextmanager
    def working(self, name: str = "call") -> Iterator[None]:
        """Around one call named `name`."""
        with self._cv:
            self._busy += 1
            alone = self._busy == 1 and _reset_peak()
            start = _rss_kb() if alone else 0
        try:
            yield
        finally:
            with self._cv:
                self._busy -= 1
                self._dirty = True
                if alone:
                    rise = max(0, _status_kb("VmHWM:") - start)
                    self.rise_kb[name] = max(rise, self.rise_kb.get(name, 0))
                self._cv.notify()

    def status(self) -> dict[str, Any]:
        rises = sorted(self.rise_kb.items(), key=lambda kv: -kv[1])
        return {"heap_trims": self.trims, "heap_trimmed_mb": round(self.freed_kb / 1024, 1),
                "rise_mb": {k: round(v / 1024, 1) for k, v in rises[:8]}}

    def _run(self) -> None:
        while True:
            with self._cv:
                if not self._dirty or self._busy:
                    self._cv.wait()
                    continue
                left = self._last + self.every - time.monotonic()
                if left > 0:
                    self._cv.wait(left)
                    continue
                self._dirty = False
                self._last = time.monotonic()
            before = _rss_kb()
            malloc_trim()
            self.trims += 1
            self.freed_kb += max(0, before - _rss_kb())
