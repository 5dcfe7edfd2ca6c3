"""`/metrics`: the router's telemetry in the Prometheus text format.

A custom collector reads the attempts table at scrape time (nothing is kept in memory
between scrapes) and prometheus-client writes the exposition, so label values a client
chose (a request's `task`) are escaped by the library: a newline or a quote in them
cannot forge a line.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from daemon.routing.telemetry import connect

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# (metric name without _total, column index in the query below, help text)
_SUMS = (("tokens_in", 4, "Prompt tokens"), ("tokens_out", 5, "Completion tokens"),
         ("cost_usd", 6, "Cost in US dollars"),
         ("latency_seconds", 7, "Time spent in model calls"))


def _attempt_rows(path: Path) -> list[tuple[Any, ...]]:
    if not path.exists():
        return []
    db = connect(path)
    try:
        return db.execute("SELECT model, task, outcome, count(*), sum(tokens_in), "
                          "sum(tokens_out), sum(cost_usd), sum(latency_ms) FROM attempts "
                          "GROUP BY model, task, outcome").fetchall()
    except sqlite3.OperationalError:  # a database without the table yet: nothing to say
        return []
    finally:
        db.close()


class TelemetryCollector:
    """A prometheus-client collector over the telemetry database and the circuits."""

    def __init__(self, path: Path, circuits: Callable[[], dict[str, str]]) -> None:
        self.path = path
        self.circuits = circuits

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        rows = _attempt_rows(self.path)
        attempts = CounterMetricFamily("memoryd_model_attempts",
                                       "Model attempts by model and outcome.",
                                       labels=("model", "task", "outcome"))
        for model, task, outcome, n, *_ in rows:
            attempts.add_metric((str(model), str(task), str(outcome)), n)
        yield attempts
        for name, idx, help_ in _SUMS:
            family = CounterMetricFamily(f"memoryd_model_{name}", f"{help_} by model and task.",
                                         labels=("model", "task"))
            totals: dict[tuple[str, str], float] = {}
            for r in rows:
                key = (str(r[0]), str(r[1]))
                totals[key] = totals.get(key, 0.0) + float(r[idx] or 0)
            for key, value in sorted(totals.items()):
                family.add_metric(key, value / 1000.0 if name == "latency_seconds" else value)
            yield family
        circuit = GaugeMetricFamily("memoryd_backend_circuit_open",
                                    "1 when the backend's circuit is open (or half-open), "
                                    "0 when closed.", labels=("model",))
        for name, state in sorted(self.circuits().items()):
            circuit.add_metric((name,), 0 if state == "closed" else 1)
        yield circuit


def exposition(path: Path, circuits: Callable[[], dict[str, str]]) -> bytes:
    """The Prometheus text exposition of the attempts so far and the breaker states."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(TelemetryCollector(path, circuits))
    return generate_latest(registry)
