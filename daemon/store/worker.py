"""The model worker: a child process that holds the Engine and exits when idle.

LanceDB, torch and llama.cpp cost several hundred MB; the daemon keeps them in this
child only while there is work, so an idle daemon stays small. Calls travel over a pipe;
the child serves each in its own thread, so a quick `index` or `search` is not stuck
behind a long summary. If the child dies (OOM, a crash in native code), pending calls
fail with a retryable error and the next call starts a new one.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from multiprocessing.connection import Connection
from typing import Any

import daemon
from daemon.config import Config
from daemon.errors import RetryableError
from daemon.health import Problem
from daemon.store import memtrim
from daemon.store.interface import ENGINE_METHODS

log = logging.getLogger(__name__)
# The engine's reads: answered by the resident reader when it can (daemon/store/reader.py)
READS = frozenset({"counts", "search", "recent", "timeline", "digest", "context"})
_EXIT = "__exit__"
CRASH_LOOP = (3, 600.0)  # this many unexpected worker exits within this many seconds


class StoreNotReady(RetryableError):
    """The store has no tables yet: the resident reader never creates them; the worker
    does, so it answers instead. (Here, not in reader.py: the daemon unpickles it.)"""


def _be_nice(niceness: int) -> None:
    """Lower this process's CPU priority: the worker's indexing and summaries are
    background work, searches (the reader) and the user's programs go first."""
    try:
        os.nice(max(0, niceness - os.nice(0)))  # before any thread: threads inherit it
        log.info("the model worker runs at nice %d: searches and your programs go first",
                 os.nice(0))
    except OSError as exc:
        log.warning("could not lower the model worker's priority (%s); it runs as the "
                    "daemon does", exc)


def _serve(cfg: Config, conn: Connection, log_level: int, target: str = "engine") -> None:
    """Child process: build the Engine (or, for target "reader", the resident Reader)
    lazily and answer calls until told to exit."""
    from daemon.logs import setup_logging

    setup_logging(log_level)
    from daemon.store.engine import Engine

    make: Any = Engine
    allowed = ENGINE_METHODS
    if target == "engine" and cfg.pipeline.worker_nice:
        _be_nice(cfg.pipeline.worker_nice)
    if target == "reader":
        from daemon.store.reader import Reader as make

        allowed = ENGINE_METHODS | {"warm"}  # the reader loads its models on request
    engine: Engine | None = None
    engine_lock = threading.Lock()
    send_lock = threading.Lock()
    trim = memtrim.IdleTrim()  # a batch's freed heap goes back once the burst ends

    def answer(req_id: int, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        nonlocal engine
        try:
            if method not in allowed:  # only the protocol's methods cross the pipe
                raise AttributeError(f"the engine has no method {method!r}")
            with engine_lock:
                if engine is None:
                    engine = make(cfg)
                    engine.heap = trim
            busy = getattr(engine, "busy", None)  # the reader's idle clock
            with trim.working(method), busy(method) if busy else contextlib.nullcontext():
                result = (True, getattr(engine, method)(*args, **kwargs))
        except Exception as exc:  # sent back to the caller, who decides
            result = (False, _portable(exc))
        with send_lock:
            try:
                conn.send((req_id, *result))
            except Exception as exc:  # an unpicklable error: send its text instead
                conn.send((req_id, False, RuntimeError(f"{type(exc).__name__}: {exc}")))

    threads: list[threading.Thread] = []
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            # The daemon is gone (killed, crashed): nobody will read an answer, so leave
            # now rather than finish a summary as an orphan. The journal still holds it.
            os._exit(0)
        if msg == _EXIT:
            break
        t = threading.Thread(target=answer, args=msg, daemon=True)
        t.start()
        threads = [x for x in threads if x.is_alive()] + [t]
    for t in threads:
        t.join(timeout=5)
    if engine is not None:
        engine.close()


def _portable(exc: Exception) -> Exception:
    """`exc` if it survives the pipe, else an error of a plain type with its text. Some
    errors pickle but cannot be rebuilt (an `__init__` with extra required arguments):
    unpickling one in the daemon would kill the reader and hang every pending call."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        plain = RetryableError if isinstance(exc, RetryableError) else RuntimeError
        return plain(f"{type(exc).__name__}: {exc}")


class WorkerEngine:
    """The Engine's methods, run in the worker process: a `MemoryEngine` whose every
    method is `call(name, ...)`.

    With a `reader` (a WorkerEngine whose target is "reader", daemon/store/reader.py),
    searches and reads go to that resident process instead, so they never wait for this
    one to start or for its batches. `idle_seconds` 0 never stops the process."""

    def __init__(self, cfg: Config, idle_seconds: float | None = None, *,
                 target: str = "engine", reader: WorkerEngine | None = None) -> None:
        self.cfg = cfg
        self.idle_seconds = cfg.models.idle_unload_seconds if idle_seconds is None else idle_seconds
        self.target = target
        self.reader = reader
        self.served = {"reader": 0, "worker": 0}
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        # each call's future and the pipe it went down: a pipe that ends fails only its own
        # calls, never those already sent to the next worker
        self._pending: dict[int, tuple[Future[Any], Connection]] = {}
        self._ids = itertools.count()
        self._last = time.monotonic()
        self._closed = False
        self._crashes: deque[float] = deque(maxlen=CRASH_LOOP[0])  # wall times of crashes
        self._reaper = threading.Thread(target=self._reap, name="worker-reaper", daemon=True)
        self._reaper.start()

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self.alive else None

    def _start(self) -> None:
        """Start the child with `subprocess` and one end of a socket pair (see
        daemon/store/child.py for why not multiprocessing). If the daemon dies, the child
        reads the end of its socket and leaves."""
        mine, theirs = socket.socketpair()
        root = os.path.dirname(os.path.dirname(os.path.abspath(daemon.__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        # glibc gives each of LanceDB's and onnxruntime's threads its own malloc arena,
        # kept after use: two cost ~190 MB less in a backfilling worker (bench/README.md)
        env.setdefault("MALLOC_ARENA_MAX", "2")
        try:
            proc = subprocess.Popen(
                [sys.executable, "-P", "-m", "daemon.store.child", str(theirs.fileno()),
                 f"memoryd-{self.target}"], pass_fds=(theirs.fileno(),), env=env,
                stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        conn = Connection(mine.detach())
        try:
            conn.send((self.cfg, logging.getLogger().level, self.target))
        except OSError:
            conn.close()
            proc.kill()
            proc.wait()
            raise
        self._proc, self._conn = proc, conn
        threading.Thread(target=self._read, args=(conn,), name="worker-reader",
                         daemon=True).start()
        log.info("%s process started (pid %s)",
                 "model worker" if self.target == "engine" else self.target, proc.pid)

    def _read(self, conn: Connection) -> None:
        while True:
            try:
                req_id, ok, value = conn.recv()
            except (EOFError, OSError):
                break
            except Exception:  # an answer that cannot be rebuilt here: never hang callers
                log.exception("unreadable answer from the model worker; restarting it")
                with self._lock:
                    if self._conn is conn:
                        self._stop_locked()
                break
            with self._lock:
                fut = self._pending.pop(req_id, (None, conn))[0]
            if fut is None:
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)
        with self._lock:
            if self._conn is conn:  # not stopped by us: the worker died
                if self._proc is not None:
                    self._proc.poll()  # reap it if it has left
                self._conn = None
                self._proc = None
                self._crashes.append(time.time())
                log.warning("the model worker process ended unexpectedly")
            lost = [r for r, (_, c) in self._pending.items() if c is conn]
            lost_futures = [self._pending.pop(r)[0] for r in lost]
        for fut in lost_futures:
            fut.set_exception(RetryableError(
                "the model worker process ended during a call (out of memory or a crash in "
                "native code); the work stays in the journal and will be retried"))

    def crash_loop(self) -> Problem | None:
        """A sentence when the worker died CRASH_LOOP[0] times within CRASH_LOOP[1] s."""
        n, window = CRASH_LOOP
        times = list(self._crashes)
        if len(times) < n or time.time() - times[0] > window:
            return None
        return Problem("worker_crash_loop", f"the model worker crashed {n} times in "
                       f"{time.time() - times[0]:.0f} s (out of memory or a crash in native "
                       "code); memory is not being indexed reliably: see the daemon's log",
                       time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(times[0])))

    def call(self, method: str, *args: Any, touch: bool = True, **kwargs: Any) -> Any:
        """Run `method` in the worker; `touch=False` (status polls) leaves the idle clock
        alone, so a tray polling status does not keep the models loaded forever."""
        fut: Future[Any] = Future()
        with self._lock:
            if self._closed:
                raise RetryableError("memoryd is shutting down")
            if self._conn is None or not self.alive:
                self._start()
            req_id = next(self._ids)
            assert self._conn is not None
            self._pending[req_id] = (fut, self._conn)
            self._conn.send((req_id, method, args, kwargs))
        try:
            return fut.result()
        finally:
            if touch:
                self._last = time.monotonic()

    def _reap(self) -> None:
        while not self._closed:
            time.sleep(min(5.0, max(self.idle_seconds / 4, 0.2)))
            if self.idle_seconds <= 0:
                continue
            with self._lock:
                idle = time.monotonic() - self._last
                if self._conn is not None and not self._pending and idle >= self.idle_seconds:
                    log.info("model worker idle for %.0f s: stopping it to free memory", idle)
                    self._stop_locked()
                    memtrim.malloc_trim()  # and what the daemon freed meanwhile

    def _stop_locked(self) -> None:
        conn, proc = self._conn, self._proc
        self._conn, self._proc = None, None
        if conn is not None:
            try:
                conn.send(_EXIT)
            except OSError:
                pass
        if proc is not None:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # stuck in native code: the journal keeps its work
                proc.kill()
                proc.wait()
        if conn is not None:
            conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._stop_locked()
        if self.reader is not None:
            self.reader.close()

    # The Engine's interface (daemon/store/interface.py), forwarded by name: the one
    # place that lists the methods is the protocol, so a new one needs no forwarder here.
    # Reads go to the resident reader when there is one (`read`), the rest to the worker.
    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in ENGINE_METHODS:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r} "
                                 "(not a method of daemon.store.interface.MemoryEngine)")
        return functools.partial(self.read if name in READS else self.call, name)

    def read(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A read: by the resident reader when there is one and it can answer (the store
        exists, the reader is up), else by the worker."""
        if self.reader is not None:
            try:
                out = self.reader.call(method, *args, **kwargs)
                self.served["reader"] += 1
                return out
            except StoreNotReady:
                pass
            except RetryableError as exc:  # the reader died: the next read restarts it
                log.warning("the resident reader failed (%s); the worker answers", exc)
        self.served["worker"] += 1
        return self.call(method, *args, **kwargs)

    def warm_reader(self) -> None:
        """Start the resident reader and load its embedder and store (daemon start)."""
        if self.reader is not None:
            try:
                self.reader.call("warm")
            except Exception as exc:  # searches still work through the worker
                log.warning("the resident reader could not start: %s; searches go to "
                            "the worker until it can", exc)

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"worker": "stopped (idle)", "models_loaded": {}}
        if self.alive:
            out = dict(self.call("status", touch=False))
            out["worker"] = f"running (pid {self.pid})"
        if self.reader is not None:
            out["reader"] = (f"running (pid {self.reader.pid})" if self.reader.alive
                             else "stopped")
            out["reads_served"] = dict(self.served)
            if self.reader.alive:
                with contextlib.suppress(Exception):  # a status never fails on the reader
                    out["reader_memory"] = self.reader.call("status", touch=False)
        return out
