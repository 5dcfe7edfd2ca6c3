"""A summary that fails (here: a summarizer GGUF llama.cpp cannot load) is not retried on
every scheduler tick: the next attempt waits, so a dead model or a full store does not
burn CPU every few seconds. `ingest --once` (flush) still tries at once."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from collectors.base import Batch, Event
from daemon.config import load_config
from daemon.store.engine import Engine
from daemon.intake.journal import Journal
from daemon.pipeline.steps import Pipeline


def _attempts(data: Path) -> int:
    db = data / "telemetry.sqlite3"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as c:
        return int(c.execute("SELECT COUNT(*) FROM attempts WHERE task = 'compaction'")
                   .fetchone()[0])


def test_a_failed_summary_waits_before_the_model_is_asked_again(make_config,
                                                                 tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 4096)  # a header and nothing llama.cpp can load
    cfg = load_config(make_config(models={"summarizer": str(broken)},
                                  compaction={"chunk_model": "always"}))
    journal = Journal(cfg.data_path / "journal.sqlite3")
    engine = Engine(cfg)
    pipeline = Pipeline(cfg, journal, engine)
    old = datetime.now(UTC) - timedelta(hours=1)  # a closed chunk: summarized at once
    journal.append(Batch("shell", [
        Event.new(source="shell", kind="shell.command", subject=f"make test-{i}",
                   ts=old + timedelta(seconds=i)) for i in range(3)]))
    assert pipeline.index_step() == 3

    first = pipeline.summary_step()
    assert first.errors and "summarizing failed" in (pipeline.last_error or "")
    engine.models.flush()
    tried = _attempts(cfg.data_path)
    assert tried >= 1
    for _ in range(3):  # the scheduler's next ticks: held back, the model is not called
        assert pipeline.summary_step().errors == []
    engine.models.flush()
    assert _attempts(cfg.data_path) == tried
    assert journal.counts()["indexed"] == 3  # nothing lost: still waiting for a summary

    assert pipeline.summary_step(flush=True).errors  # `ingest --once` tries now
    engine.close()
    journal.close()
