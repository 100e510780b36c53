"""hub-api's Prometheus metrics, served at /metrics from the process's registry. The operator
console reads `hookhub_requests_total` by name (its refusals by status)."""

import functools

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "hookhub_requests_total",
    "Ingest requests by route, provider and status",
    ["route", "provider", "status"],
)
PUBLISH_SECONDS = Histogram(
    "hookhub_publish_seconds",
    "Time from publish to the broker's confirm",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
REQUEST_SECONDS = Histogram(
    "hookhub_request_duration_seconds",
    "Ingest requests, from the server handing them over to the answer sent, by route and status",
    ["route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


@functools.cache
def requests_counter(route: str, provider: str, status: str) -> Counter:
    """`REQUESTS` for one label set, looked up once rather than on every request."""
    return REQUESTS.labels(route, provider, status)
