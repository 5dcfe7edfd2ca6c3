"""`ingest --once` progress: plain lines when not on a terminal (a log, CI), at most one
every few seconds a stage, and always the last."""

from __future__ import annotations

import io

from daemon.cli.progress import progress_printer


def test_plain_lines_off_a_terminal() -> None:
    out = io.StringIO()
    show, close = progress_printer(out)
    for done in range(0, 257, 32):
        show("index", done, 256)
    show("summarize", 10, 40)
    close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "index: 0/256 events"
    assert "index: 256/256 events" in lines  # the last always shows
    assert len([x for x in lines if x.startswith("index")]) == 2  # throttled in between
    assert lines[-1] == "summarize: 10/40 events"
