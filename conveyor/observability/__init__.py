"""Observability: OpenTelemetry traces of runs, steps and requests (``conveyor[otel]``)."""
