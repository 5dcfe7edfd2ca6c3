"""Large batches are redacted in worker processes (daemon/intake/redact_pool.py): the
journal must store exactly what it stores when it redacts in its own process, keep every
secret out, and carry on in process when the pool cannot be used or dies."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import Future
from pathlib import Path

from collectors.base import Batch, Event
from daemon.intake.journal import Journal
from daemon.intake.redact import redact
from daemon.intake.redact_pool import LARGE, RETRY, RedactPool
from tests.daemon.intake.secret_corpus import FORMATS

ROOT = str(Path(__file__).resolve().parents[3])


def events(n: int, seed: int) -> tuple[list[Event], list[str]]:
    """`n` events, one in three with a secret of a covered format in its text, subject,
    title or attrs; and the secrets."""
    rnd = random.Random(seed)
    names = sorted(FORMATS)
    out, secrets = [], []
    for i in range(n):
        text, subject, title = f"line {i} of some notes", f"/home/u/notes/{i}.md", f"{i}.md"
        attrs: dict[str, object] = {"size": i, "root": "/home/u/notes"}
        if i % 3 == 0:
            written, secret = FORMATS[names[i // 3 % len(names)]](rnd)
            secrets.append(secret)
            where = i // 3 % 4
            if where == 0:
                text = f"{text}\n{written}\nmore"
            elif where == 1:
                subject = f"{subject} {written}"
            elif where == 2:
                title = written
            else:
                attrs["note"] = {"body": written}
        out.append(Event.new(ts=1_700_000_000 + seed * 100_000 + i, source="files",
                             kind="file.modified", subject=subject, title=title, text=text,
                             attrs=attrs))
    return out, secrets


def stored(j: Journal) -> list[tuple[object, ...]]:
    return [(e.id, e.subject, e.title, e.text, e.attrs) for e in j.at_stage(0, 100_000)]


def wait_ready(j: Journal) -> None:
    assert j._pool is not None
    deadline = time.monotonic() + 120
    while not j._pool.usable(LARGE):
        assert time.monotonic() < deadline, "the redaction pool never started"
        time.sleep(0.2)


def test_a_large_batch_redacted_by_the_pool_is_stored_as_in_process(tmp_path: Path) -> None:
    first, _ = events(LARGE, seed=1)
    second, secrets = events(3 * LARGE + 17, seed=2)
    pooled = Journal(tmp_path / "pooled.sqlite3", redact=redact, owner="ann@lap", workers=2)
    alone = Journal(tmp_path / "alone.sqlite3", redact=redact, owner="ann@lap", workers=0)
    try:
        pooled.append(Batch("files", first, "1"))  # starts the pool, redacted in process
        wait_ready(pooled)
        assert pooled.append(Batch("files", second, "2")) == len(second)
        workers = list(pooled._pool._pool._processes)  # type: ignore[union-attr]
        assert len(workers) == 2, "the batch was not sent to two worker processes"
        for batch in (first, second):
            alone.append(Batch("files", batch, "x"))
        rows = stored(pooled)
        assert rows == stored(alone)
        assert len(rows) == len(first) + len(second)
        assert pooled.cursor("files") == "2"
        dump = repr(rows)
        leaked = [s for s in secrets if s in dump]
        assert not leaked, f"{len(leaked)} secrets stored in clear: {leaked[:3]}"
    finally:
        pooled.close()
        alone.close()


def test_a_pool_that_dies_leaves_the_batch_to_the_journal(tmp_path: Path) -> None:
    first, _ = events(LARGE, seed=3)
    second, secrets = events(2 * LARGE, seed=4)
    j = Journal(tmp_path / "j.sqlite3", redact=redact, workers=2)
    try:
        j.append(Batch("files", first, "1"))
        wait_ready(j)
        for pid in list(j._pool._pool._processes):  # type: ignore[union-attr]
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        assert j.append(Batch("files", second, "2")) == len(second)
        assert j.counts()["total"] == len(first) + len(second)
        assert not [s for s in secrets if s in repr(stored(j))]
        assert not j._pool.usable(LARGE)  # retired: in process from now on
        assert j.append(Batch("files", events(LARGE, seed=5)[0], "3")) == LARGE
    finally:
        j.close()


def test_a_redaction_that_cannot_be_sent_runs_in_process(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3", redact=lambda s: redact(s), workers=2)
    batch, secrets = events(2 * LARGE, seed=6)
    try:
        for _ in range(2):
            assert not j._pool or not j._pool.usable(len(batch))
        assert j.append(Batch("files", batch, "1")) == len(batch)
        assert not [s for s in secrets if s in repr(stored(j))]
    finally:
        j.close()


def test_the_faster_way_is_taken_and_the_slower_one_timed_again() -> None:
    # No processes needed: the choice only reads the timings the journal records.
    pool = RedactPool(redact, 2)
    ready: Future[bool] = Future()
    ready.set_result(True)
    pool._pool, pool._ready = object(), ready
    assert pool.usable(LARGE)  # the pool not timed yet: it is tried
    pool.timed(True, LARGE, 0.2)
    pool.timed(False, LARGE, 0.1)  # a busy machine: redacting in process was faster
    picks = [pool.usable(LARGE) for _ in range(4 * RETRY)]
    assert picks.count(True) == 4  # the pool is timed again every RETRY-th batch only
    for _ in range(10):
        pool.timed(True, LARGE, 0.05)  # the machine got quiet: the pool wins now
    assert [pool.usable(LARGE) for _ in range(4 * RETRY)].count(False) == 4
    assert not pool.usable(LARGE - 1)  # small batches stay in process
    pool._pool = None


KILLED = '''
import os, signal, sys, tempfile
from pathlib import Path
from collectors.base import Batch
from daemon.intake.journal import Journal
from daemon.intake.redact import redact
from daemon.intake.redact_pool import LARGE
from tests.daemon.intake.test_redact_pool import events, wait_ready

if __name__ == "__main__":
    j = Journal(Path(sys.argv[1]) / "j.sqlite3", redact=redact)
    j.append(Batch("files", events(LARGE, seed=7)[0], None))
    wait_ready(j)
    j.append(Batch("files", events(2 * LARGE, seed=8)[0], None))
    print(" ".join(map(str, j._pool._pool._processes)), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
'''


def test_the_workers_leave_with_a_killed_journal_process(tmp_path: Path) -> None:
    """`kill -9` of the daemon must not leave its redaction workers behind."""
    script = tmp_path / "killed.py"
    script.write_text(KILLED)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True,
                          text=True, timeout=180, env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    pids = [int(p) for p in proc.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 15
    while (alive := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive, f"redaction workers {alive} outlived their killed journal process"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of an exited worker counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
