"""The physical memory a process tree holds: its resident pages, each counted once.

Summing each process's RSS counts a page twice when two processes map it: the reader
and the worker both map LanceDB's, onnxruntime's and Python's code and the embedder's
weights, ~150-200 MB during a backfill (bench/README.md). PSS splits each shared page
between its mappers, so a tree's PSS is close, but it also splits pages shared with
processes outside the tree (libc), and so undercounts a little.

`tree_resident_mb` counts the distinct physical frames behind every resident page of
the tree: /proc/PID/smaps says which mappings hold resident pages, /proc/PID/pagemap
gives each page's frame number (bit 63: present, bits 0-54: the frame). Linux only, and
frame numbers need CAP_SYS_ADMIN (root): without it the kernel reports them as zero and
this returns None.
"""

from __future__ import annotations

import os

import numpy as np

PAGE = os.sysconf("SC_PAGE_SIZE")
PRESENT = np.uint64(1 << 63)
FRAME = np.uint64((1 << 55) - 1)


def _resident_ranges(pid: int) -> list[tuple[int, int]]:
    """(start, end) of each mapping of `pid` that has a resident page."""
    ranges: list[tuple[int, int]] = []
    span: tuple[int, int] | None = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split(None, 1)[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = head.split("-")
                span = (int(lo, 16), int(hi, 16))
            elif head == "Rss:" and span is not None and int(line.split()[1]) > 0:
                ranges.append(span)
    return ranges


def frames(pid: int) -> np.ndarray:
    """The physical frame numbers of every resident page of `pid` (may repeat)."""
    found = []
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
    try:
        for start, end in _resident_ranges(pid):
            raw = os.pread(fd, (end - start) // PAGE * 8, start // PAGE * 8)
            entries = np.frombuffer(raw, dtype=np.uint64)
            found.append(entries[(entries & PRESENT) != 0] & FRAME)
    finally:
        os.close(fd)
    return np.concatenate(found) if found else np.zeros(0, dtype=np.uint64)


def tree_resident_mb(pids: list[int]) -> float | None:
    """MB of the distinct physical pages resident in any of `pids` (None: frame numbers
    unreadable here); a process that exits meanwhile is left out."""
    every = []
    for pid in pids:
        try:
            every.append(frames(pid))
        except OSError:
            continue
    if not every:
        return None
    distinct = np.unique(np.concatenate(every))
    if distinct.size and not distinct.any():  # all zero: no CAP_SYS_ADMIN
        return None
    return round(distinct.size * PAGE / (1 << 20), 1)
