"""Giving an idle process's memory back: only clean file pages are dropped, and what was
dropped reads back the same (real /proc, real mmap)."""

from __future__ import annotations

import mmap
import sys
from pathlib import Path

import pytest

from daemon.store import memtrim

SMAPS = """\
7f0000000000-7f0000100000 r-xp 00000000 08:01 11 /usr/lib/libfoo.so
Rss:                 512 kB
Anonymous:             0 kB
7f0000100000-7f0000200000 r--p 00100000 08:01 11 /usr/lib/libfoo.so
Rss:                  64 kB
Anonymous:            64 kB
7f0000200000-7f0000300000 rw-p 00200000 08:01 11 /usr/lib/libfoo.so
Rss:                  32 kB
Anonymous:             0 kB
7f0000300000-7f0000400000 rw-p 00000000 08:01 12 /data/weights.bin
Rss:                1024 kB
Anonymous:             0 kB
7f0000400000-7f0000500000 rw-p 00000000 00:00 0 [heap]
Rss:                2048 kB
Anonymous:          2048 kB
7f0000500000-7f0000600000 r--p 00000000 08:01 13 /tmp/gone.so (deleted)
Rss:                   8 kB
Anonymous:             0 kB
7f0000600000-7f0000700000 r--p 00000000 08:01 14 /usr/lib/cold.so
Rss:                   0 kB
Anonymous:             0 kB
"""


def test_only_clean_file_mappings_are_droppable() -> None:
    assert memtrim.clean_file_mappings(SMAPS) == [(0x7f0000000000, 0x7f0000100000, 512)]
    # a writable mapping only when its file is named as never written through it
    assert memtrim.clean_file_mappings(SMAPS, frozenset({"/data/weights.bin"})) == [
        (0x7f0000000000, 0x7f0000100000, 512), (0x7f0000300000, 0x7f0000400000, 1024)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_shed_unmaps_a_read_file_and_it_reads_back_the_same(tmp_path: Path) -> None:
    data = bytes(range(256)) * (32 * 1024 * 1024 // 256)  # 32 MB
    path = tmp_path / "weights.bin"
    path.write_bytes(data)
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        assert m[:] == data  # every page resident in this process
        out = memtrim.shed()
        assert out.file_kb >= 30 * 1024, out
        assert out.rss_after_kb <= out.rss_before_kb - 30 * 1024, out
        assert m[:] == data  # mapped back from the page cache, unchanged


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_shed_never_drops_a_private_copy(tmp_path: Path) -> None:
    path = tmp_path / "patched.bin"
    path.write_bytes(b"\0" * (1 << 20))
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) as m:
        m[:4] = b"mine"  # a copy-on-write page of this process's own
        memtrim.shed(frozenset({str(path)}))  # even when named as never written
        assert m[:4] == b"mine"


# A process that fills a thread's heap arena with 4 KB blocks, frees all but one in 64
# (so the arena cannot shrink from its top), and reports what the idle trim gave back.
FRAGMENTED_BURST = """
import json, threading, time
from daemon.store import memtrim

trim = memtrim.IdleTrim(every=0.2)
kept, seen = [], {}

def burst():
    with trim.working():
        blocks = [bytes(4000) + bytes([i % 251]) for i in range(20000)]  # ~80 MB
        kept.extend(blocks[::64])
        del blocks
        seen["rss_freed"] = memtrim._rss_kb()
        time.sleep(0.6)  # three trim periods with the call still in flight
        seen["trims_during"] = trim.trims

t = threading.Thread(target=burst)
t.start()
t.join()
deadline = time.monotonic() + 10
while trim.trims == 0 and time.monotonic() < deadline:
    time.sleep(0.05)
time.sleep(0.1)
print(json.dumps({**seen, "rss_after": memtrim._rss_kb(), **trim.status()}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_heap_goes_back_once_the_burst_of_calls_ends() -> None:
    import json
    import subprocess

    out = json.loads(subprocess.run([sys.executable, "-c", FRAGMENTED_BURST], check=True,
                                    capture_output=True, text=True).stdout)
    assert out["trims_during"] == 0  # never while a call is in flight
    assert out["heap_trims"] == 1
    # ~78 MB freed but kept by malloc until the trim
    assert out["rss_freed"] - out["rss_after"] >= 40 * 1024, out
    assert out["heap_trimmed_mb"] >= 40, out


# Two kinds of call in a fresh process: one holds ~60 MB for a moment and frees it, the
# other allocates nothing. What each raised the resident set by is told apart afterwards.
CALL_RISES = """
import json
from daemon.store import memtrim

trim = memtrim.IdleTrim()
for _ in range(2):
    with trim.working("light"):
        sum(range(1000))
    with trim.working("digest"):
        block = bytearray(60 * 1024 * 1024)
        block[::4096] = b"x" * len(block[::4096])  # every page touched
        del block  # gone before the call returns: only the peak saw it
print(json.dumps({"rss_now": memtrim._rss_kb(), **trim.status()}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_each_kind_of_call_keeps_its_largest_rise_of_the_resident_set() -> None:
    import json
    import subprocess

    out = json.loads(subprocess.run([sys.executable, "-c", CALL_RISES], check=True,
                                    capture_output=True, text=True).stdout)
    rises = out["rise_mb"]
    assert list(rises) == ["digest", "light"]  # the largest first
    assert 55 <= rises["digest"] <= 70, out  # the 60 MB, though freed before the call ended
    assert rises["light"] < 5, out
