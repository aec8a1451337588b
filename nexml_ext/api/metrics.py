"""Prometheus metrics of one app, in a registry of its own (two apps in one process, as in
tests, never share or collide)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# The label when a request names no known route or version (so unknown names, which anyone
# can send, never grow the label set).
NONE = ""


class ServingMetrics:
    """Requests, latency, scored rows and errors by route and model version, plus the depth of
    the decision log's commit queue (read when scraped)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, queue_depth: Callable[[], float] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "nexml_http_requests",
            "HTTP requests answered, by endpoint, route and status.",
            ["endpoint", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "nexml_http_request_duration_seconds",
            "Time from request to response, by endpoint and route.",
            ["endpoint", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.predictions = Counter(
            "nexml_predictions",
            "Rows scored and recorded, by route, deployment and model version.",
            ["route", "deployment", "model_version"],
            registry=self.registry,
        )
        self.errors = Counter(
            "nexml_request_errors",
            "Requests refused or failed, by route, model version (empty when the failure came "
            "before a version was chosen) and status.",
            ["route", "model_version", "status"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "nexml_audit_queue_depth",
            "Decision-record submissions waiting for the committer.",
            registry=self.registry,
        )
        if queue_depth is not None:
            self.queue_depth.set_function(queue_depth)

    def observe(
        self, endpoint: str, route: str, version: str, status: int, seconds: float
    ) -> None:
        """Count one answered HTTP request (and an error when ``status`` is 4xx/5xx)."""
        self.requests.labels(endpoint, route, str(status)).inc()
        self.latency.labels(endpoint, route).observe(seconds)
        if status >= 400:
            self.errors.labels(route, version, str(status)).inc()

    def render(self) -> bytes:
        """The text exposition format of every metric in this registry."""
        return generate_latest(self.registry)
