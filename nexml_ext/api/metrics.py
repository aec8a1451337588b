"""Prometheus metrics of one app, in a registry of its own (two apps in one process, as in
tests, never share or collide).

A gateway of several processes (``nexml server --processes N``, api/server.py) shares its
metrics: the supervisor gives its children one fresh directory in ``PROMETHEUS_MULTIPROC_DIR``,
prometheus_client then keeps every process's values in files there, and ``/metrics`` answers
with the sum over all of them, whichever process takes the scrape. Counts of a child that died
stay in the totals (counters never go back); its share of the queue-depth gauge goes with it.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

#: prometheus_client's switch to multi-process values, read when it is first imported (the
#: supervisor sets it before starting its children).
SHARED_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def shared_dir() -> str | None:
    """The directory this process's metrics are shared through, or None (its own only): set,
    and set before prometheus_client chose how to keep values (else nothing is in it)."""
    path = os.environ.get(SHARED_DIR_ENV) or os.environ.get(SHARED_DIR_ENV.lower())
    return path if path and values.ValueClass is not values.MutexValue else None

# The label when a request names no known route or version (so unknown names, which anyone
# can send, never grow the label set).
NONE = ""


class ServingMetrics:
    """Requests, latency, scored rows and errors by route and model version, plus the depth of
    the decision log's commit queue (read when scraped)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, queue_depth: Callable[[], float] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._shared = shared_dir()
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
            "Decision-record submissions waiting for the committer (over every serving "
            "process: each one's depth when it last answered a request or a scrape).",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        # Shared values live in files, which a function-backed gauge never writes: each
        # process then stores its own depth after every request and before every scrape.
        self._depth = queue_depth if self._shared else None
        if queue_depth is not None and not self._shared:
            self.queue_depth.set_function(queue_depth)

    def observe(
        self, endpoint: str, route: str, version: str, status: int, seconds: float
    ) -> None:
        """Count one answered HTTP request (and an error when ``status`` is 4xx/5xx)."""
        self.requests.labels(endpoint, route, str(status)).inc()
        self.latency.labels(endpoint, route).observe(seconds)
        if status >= 400:
            self.errors.labels(route, version, str(status)).inc()
        if self._depth is not None:
            self.queue_depth.set(self._depth())

    def render(self) -> bytes:
        """The text exposition format of every metric: this registry's, or, when shared, the
        sums over every process of the gateway."""
        if self._shared is None:
            return generate_latest(self.registry)
        if self._depth is not None:
            self.queue_depth.set(self._depth())
        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined, path=self._shared)
        return generate_latest(combined)
