"""Prometheus metrics of one server, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class ServerMetrics:
    """Requests, latency, errors per endpoint and version; model loads; prediction-log drops."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("conveyor_requests", "Prediction requests", ["endpoint", "version", "protocol", "code"],
                                registry=r)
        self.latency = Histogram("conveyor_request_latency_seconds", "Prediction latency",
                                 ["endpoint", "version"], buckets=BUCKETS, registry=r)
        self.errors = Counter("conveyor_request_errors", "Failed prediction requests", ["endpoint", "version", "kind"],
                              registry=r)
        self.rows = Counter("conveyor_predicted_rows", "Rows predicted", ["endpoint", "version"], registry=r)
        self.model_load = Histogram("conveyor_model_load_seconds", "Model load time", ["model", "version"],
                                    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30), registry=r)
        self.models_loaded = Gauge("conveyor_models_loaded", "Models in memory", registry=r)
        self.log_dropped = Counter("conveyor_prediction_log_dropped", "Prediction log rows dropped on overflow",
                                   registry=r)
        self.shadow_errors = Counter("conveyor_shadow_errors", "Shadow predictions that failed", ["endpoint", "version"],
                                     registry=r)
