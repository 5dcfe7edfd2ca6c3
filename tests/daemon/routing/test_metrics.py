"""/metrics is written by prometheus-client over the telemetry database: a client's
`task` with a newline or quotes stays inside its label and cannot forge a sample."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from daemon.routing.metrics import exposition
from daemon.routing.telemetry import Attempt, Telemetry


def _attempt(task: str, model: str = "good", outcome: str = "ok") -> Attempt:
    return Attempt(ts=time.time(), request_id="r1", route="api", task=task, model=model,
                   backend="openai", privacy="local", tokens_in=10, tokens_out=5,
                   cost_usd=0.0, latency_ms=250.0, ttft_ms=None, outcome=outcome,
                   error_class="", fallback_depth=0, memory_used=0, tools=0)


def test_a_forged_task_label_cannot_add_lines_or_samples(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.sqlite3"
    tel = Telemetry(path)
    forged = 'x"} 1\nmemoryd_backend_circuit_open{model="evil"} 1\n# \\'
    tel.record(_attempt("default"))
    tel.record(_attempt(forged))
    tel.flush(5.0)
    text = exposition(path, lambda: {"good": "closed"}).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    circuits = [s.labels for s in families["memoryd_backend_circuit_open"].samples]
    assert circuits == [{"model": "good"}]  # no "evil" circuit was forged
    tasks = sorted(s.labels["task"] for s in families["memoryd_model_attempts"].samples)
    assert tasks == sorted(["default", forged])  # the forged text, whole, as one label
    assert not any(line.startswith("memoryd_backend_circuit_open{model=\"evil\"")
                   for line in text.splitlines())
    tokens = {s.labels["task"]: s.value for s in families["memoryd_model_tokens_in"].samples}
    assert tokens == {"default": 10.0, forged: 10.0}
    latency = families["memoryd_model_latency_seconds"].samples[0]
    assert latency.value == 0.25


def test_metrics_without_telemetry_yet_lists_the_circuits(tmp_path: Path) -> None:
    text = exposition(tmp_path / "none.sqlite3", lambda: {"a": "open", "b": "closed"}).decode()
    assert 'memoryd_backend_circuit_open{model="a"} 1.0' in text
    assert 'memoryd_backend_circuit_open{model="b"} 0.0' in text
    assert "# TYPE memoryd_model_attempts_total counter" in text
