"""Prometheus metrics of runs and steps, read from the metadata store when scraped.

Runs are executed by many short-lived processes (``conveyor run``, the agent's launchers,
exported tasks that write to the database), so in-process counters would each see a sliver. The
store sees every run: on each scrape this collector asks it for totals grouped by pipeline and
status (runs) and by step, status and cache hit (step runs), two indexed aggregate queries.
``conveyor agent --metrics-port`` serves them; any process can register the collector.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


class RunsCollector:
    """A ``prometheus_client`` collector over a metadata store's runs and step runs."""

    def __init__(self, metadata: Any) -> None:
        self.metadata = metadata

    def describe(self) -> list[Any]:
        return []    # no scrape at registration time: the store is read only when Prometheus asks

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        runs = CounterMetricFamily("conveyor_runs", "Pipeline runs recorded in the store, by pipeline and status",
                                   labels=["pipeline", "status"])
        run_seconds = CounterMetricFamily("conveyor_run_duration_seconds",
                                          "Summed wall time of the runs, by pipeline and status",
                                          labels=["pipeline", "status"])
        active = GaugeMetricFamily("conveyor_runs_active", "Runs pending or running now", labels=["pipeline"])
        in_flight: dict[str, int] = {}
        for pipeline, status, count, seconds in self.metadata.runs.totals():
            runs.add_metric([pipeline, status], count)
            run_seconds.add_metric([pipeline, status], seconds)
            in_flight[pipeline] = in_flight.get(pipeline, 0) + (count if status in ("pending", "running") else 0)
        for pipeline, count in in_flight.items():     # 0 too: an alert on it needs the series to exist
            active.add_metric([pipeline], count)
        steps = CounterMetricFamily("conveyor_steps", "Step runs recorded in the store, by step, status and cache hit",
                                    labels=["step", "status", "cache_hit"])
        step_seconds = CounterMetricFamily("conveyor_step_duration_seconds", "Summed wall time of the step runs",
                                           labels=["step", "status"])
        by_step: dict[tuple[str, str], float] = {}
        for step, status, hit, count, seconds in self.metadata.steps.totals():
            steps.add_metric([step, status, "true" if hit else "false"], count)
            by_step[(step, status)] = by_step.get((step, status), 0.0) + seconds
        for (step, status), seconds in by_step.items():
            step_seconds.add_metric([step, status], seconds)
        yield from (runs, run_seconds, active, steps, step_seconds)


def registry_for(metadata: Any) -> Any:
    """A registry holding only the store's run and step metrics."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunsCollector(metadata))
    return registry
