"""`memoryd status` says the engine's figures in words: a stopped worker, the reads the
reader answered, and commit conflicts only when some commit was retried."""

from __future__ import annotations

from daemon.cli.engine_status import engine_lines


def test_an_idle_daemon_says_its_worker_stopped_and_its_reader_answered_one_read() -> None:
    lines = engine_lines({"worker": "stopped (idle)", "models_loaded": {},
                          "reader": "running (pid 41)", "reads_served": {"reader": 1, "worker": 0},
                          "reader_memory": {"last_shed_mb": 98.5}})
    assert lines == ["worker:   stopped (idle), models loaded: none",
                     "reader:   running (pid 41), 1 read answered, gave back 98.5 MB when "
                     "last idle"]


def test_a_busy_daemon_lists_its_store_models_reads_and_only_the_conflicts_it_had() -> None:
    lines = engine_lines({
        "store": {"events": 27228, "memories": 1412}, "store_cache_mb": 12.5,
        "models_loaded": {"summarizer": True, "embedder": True},
        "worker": "running (pid 7)", "reader": "running (pid 8)",
        "reads_served": {"reader": 1200, "worker": 3},
        "store_conflicts": {"upsert": {"retried": 4, "gave_up": 0},
                            "optimize": {"retried": 0, "gave_up": 0}}})
    assert lines == [
        "store:    27,228 events, 1,412 memories (cache 12.5 MB)",
        "worker:   running (pid 7), models loaded: summarizer, embedder",
        "reader:   running (pid 8), 1,203 reads answered (3 by the worker)",
        "conflicts: upsert 4 retried, 0 gave up"]
