"""`memoryd run`: the daemon. Collectors feed the journal, scheduled jobs drain it
through the worker, and the API serves memory until SIGINT or SIGTERM."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from daemon.api.admin_token import ensure_token
from daemon.config import Config
from daemon.desktop.notify import Supervision
from daemon.health import Conditions, store_error
from daemon.intake.collect import CollectorRuns, build_collectors
from daemon.intake.journal import Journal
from daemon.intake.privacy import gate_for
from daemon.intake.redact import redact
from daemon.owners import journal_owner
from daemon.pipeline.citizen import Polite, busy_reason
from daemon.pipeline.steps import Pipeline
from daemon.service import MemoryService
from daemon.store.worker import WorkerEngine
from models.errors import ModelError

log = logging.getLogger(__name__)
# the first digests a minute after start (then every [compaction] interval_seconds), so a
# first start's recent days are digested once their chunks are written, not an hour later
FIRST_COMPACTION = 60.0


REPEAT_WARNING_SECONDS = 300.0  # a failure that keeps repeating is logged this often


def _guarded(name: str, fn: Any, on_error: Any = None, on_ok: Any = None) -> Any:
    """A scheduled job that logs its failure and lets the next run try again. A failure
    that repeats (a full disk, every second) is logged when it starts, every
    REPEAT_WARNING_SECONDS while it lasts, and when the job works again. `on_error(exc)`
    and `on_ok()` tell /v1/status (daemon/health.py)."""
    last: dict[str, Any] = {"error": None, "logged": 0.0}

    def job() -> None:
        try:
            fn()
            if on_ok is not None:
                on_ok()
        except Exception as exc:
            if on_error is not None:
                on_error(exc)
            text = f"{type(exc).__name__}: {exc}"
            now = time.monotonic()
            if text != last["error"] or now - last["logged"] >= REPEAT_WARNING_SECONDS:
                log.warning("%s failed: %s (will retry)", name, exc,
                            exc_info=log.isEnabledFor(10))
                last["logged"] = now
            last["error"] = text
            return
        if last["error"] is not None:
            log.info("%s works again", name)
            last["error"] = None

    return job


INDEXING_CODES = ("store_full", "store_read_only", "store_unwritable", "embedder_failed",
                  "indexing_failed")


def _indexing_health(conditions: Conditions) -> tuple[Any, Any]:
    """What a failed indexing run says about memory: the store's disk, the embedder, or
    (anything else) indexing itself; a run that works clears all of them."""
    def failed(exc: Exception) -> None:
        conditions.clear(*INDEXING_CODES)
        known = store_error(exc)
        if known is not None:
            conditions.report(*known)
        elif isinstance(exc, ModelError):
            conditions.report("embedder_failed", f"the embedder cannot be used ({exc}); new "
                              "activity waits in the journal and is not searchable yet")
        else:
            conditions.report("indexing_failed", f"indexing new activity fails ({exc}); it "
                              "waits in the journal and is not searchable yet")

    return failed, lambda: conditions.clear(*INDEXING_CODES)


def run_daemon(cfg: Config) -> int:
    from apscheduler.schedulers.background import BackgroundScheduler

    from daemon.api.app import create_app
    from daemon.api.server import bind_tcp, bind_unix, serve

    started = time.time()
    _private_data_dir(cfg)
    token = ensure_token(cfg.token_path)
    unix_sock = bind_unix(cfg.socket_path)
    tcp_sock = bind_tcp(cfg.api.port)
    port = tcp_sock.getsockname()[1]
    (cfg.data_path / "api.port").write_text(f"{port}\n")

    journal = Journal(cfg.data_path / "journal.sqlite3", redact=redact, owner=journal_owner(cfg))
    # Searches go to a resident reader (no torch; daemon/store/reader.py), the rest to the
    # worker that leaves when idle.
    reader = WorkerEngine(cfg, idle_seconds=0, target="reader") \
        if cfg.search.resident_reader else None
    engine = WorkerEngine(cfg, reader=reader)
    conditions = Conditions()
    pipeline = Pipeline(cfg, journal, engine, conditions)
    gate = gate_for(cfg, journal)  # exclusions and pause, before anything is stored
    collectors = build_collectors(cfg)
    runs = CollectorRuns(collectors)
    service = MemoryService(cfg, journal, engine, started=started, collector_runs=runs,
                            pause=gate.pause, intake=gate, pipeline=pipeline,
                            conditions=conditions)

    scheduler = BackgroundScheduler(timezone="UTC")
    _schedule_pipeline(cfg, scheduler, pipeline, conditions)
    from daemon.sync.monitor import start_sync

    start_sync(cfg, engine, service, scheduler)  # sync targets: probes, pending syncs
    _start_collectors(collectors, runs, gate, scheduler)
    scheduler.start()
    threading.Thread(target=engine.warm_reader, name="reader-warm", daemon=True).start()
    log.info("memoryd serving on %s and http://127.0.0.1:%d (collectors: %s)",
             cfg.socket_path, port, ", ".join(c.name for c in collectors) or "none")
    # systemd Type=notify: READY=1 once the API answers, watchdog pings while it and the
    # scheduler are alive, STOPPING=1 on the way out (all no-ops outside systemd).
    supervision = Supervision(cfg.socket_path, scheduler).start()
    try:
        from daemon.approvals.queue import for_service as approvals

        serve(create_app(service, token, cfg.api.max_request_bytes), [unix_sock, tcp_sock],
              on_exit=approvals(service).release)
    finally:
        log.info("memoryd stopping")
        supervision.stop()
        for c in collectors:
            c.stop()
        # The worker goes first: a running summary is abandoned (its events stay in the
        # journal and are summarized next time) instead of holding up the shutdown.
        engine.close()
        scheduler.shutdown(wait=True)
        journal.close()
        cfg.socket_path.unlink(missing_ok=True)
    return 0


def _private_data_dir(cfg: Config) -> None:
    """Everything the daemon (and its worker, which inherits this) writes is the user's
    alone, whatever umask it was started with: data dir, journal and WAL, store,
    snapshots, spool, logs, tokens."""
    os.umask(0o077)
    cfg.data_path.mkdir(parents=True, exist_ok=True)
    os.chmod(cfg.data_path, 0o700)


def _schedule_pipeline(cfg: Config, scheduler: Any, pipeline: Pipeline,
                       conditions: Conditions) -> None:
    """The pipeline's jobs: indexing often, summaries and compaction when the user's
    machine can spare the CPU."""
    p = cfg.pipeline
    scheduler.add_job(_guarded("indexing", pipeline.index_step, *_indexing_health(conditions)),
                      "interval",
                      seconds=min(p.interval_seconds, 1.0), max_instances=1, coalesce=True,
                      id="index")

    def polite(name: str, job: Any) -> Polite:
        """Heavy jobs wait while the user's CPU is busy or the laptop is on battery."""
        cc = cfg.compaction
        return Polite(name, job, lambda: busy_reason(cc.yield_cpu_percent, cc.yield_on_battery),
                      cc.max_defer_seconds)

    scheduler.add_job(_guarded("summarizing", polite("summarizing",
                                                      pipeline.summarize_then_digest_past)),
                      "interval",
                      seconds=max(p.interval_seconds, 5.0), max_instances=1, coalesce=True,
                      id="summarize")
    scheduler.add_job(_guarded("compaction", polite("compaction", pipeline.scheduled_compaction)),
                      "interval",
                      seconds=max(cfg.compaction.interval_seconds, 60.0), max_instances=1,
                      coalesce=True, id="compact", next_run_time=_soon(FIRST_COMPACTION))


def _start_collectors(collectors: list[Any], runs: CollectorRuns, gate: Any,
                      scheduler: Any) -> None:
    """Schedule every collector's polls and start its live watch where it has one."""
    for c in collectors:
        # Catch up on what changed while the daemon was away, then poll on the collector's
        # own schedule (history files every few seconds; the files backfill hourly, as a
        # safety net behind the live watch).
        scheduler.add_job(_guarded(f"{c.name} poll", lambda c=c: runs.poll(c, gate)),
                          "interval", seconds=getattr(c, "poll_seconds", 3600.0),
                          next_run_time=_soon(), max_instances=1, coalesce=True,
                          id=f"poll-{c.name}")
    for c in collectors:
        try:
            c.start(gate)
        except Exception as exc:
            log.warning("collector %s could not start watching: %s; its backfill still runs",
                        c.name, exc)


def _soon(seconds: float = 1.0) -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) + timedelta(seconds=seconds)
