"""Prometheus metrics, as module-level constants; every name starts `clarion_`."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

DELIVERIES = Counter(
    "clarion_deliveries_total",
    "Deliveries that reached a status, by app, platform, status and provider error reason.",
    ["app", "platform", "status", "reason"],
)
ACCEPT_TO_SENT = Histogram(
    "clarion_accept_to_sent_seconds",
    "From the notification's 202 to the provider accepting the delivery.",
    ["platform"],
    buckets=LATENCY_BUCKETS,
)
PROVIDER_REQUEST = Histogram(
    "clarion_provider_request_seconds",
    "Time of one batch of provider requests, by platform and outcome.",
    ["platform"],
    buckets=REQUEST_BUCKETS,
)
QUEUE_DEPTH = Gauge("clarion_queue_depth", "Jobs waiting in the queue, by queue.", ["queue"])
IN_FLIGHT = Gauge("clarion_provider_in_flight_requests", "Provider requests awaiting an answer.", ["platform"])
