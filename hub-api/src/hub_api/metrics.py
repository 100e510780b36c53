"""hub-api's Prometheus metrics, served at /metrics from the process's registry. The operator
console reads `hookhub_requests_total` by name (its refusals by status)."""

import functools

from hookhub.publish_policy import PublishPolicy
from prometheus_client import Counter, Histogram

# The caller label of a caller the publish policy does not name: as few labels as its callers.
OTHER_CALLER = "other"

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
POLICY_REFUSALS = Counter(
    "hookhub_publish_policy_refusals_total",
    "Internal events refused (403) because the publish policy does not let their caller publish "
    "their type, by caller (`other`: one the policy does not name)",
    ["caller"],
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


def policy_refusals_counter(policy: PublishPolicy, caller: str | None) -> Counter:
    """`POLICY_REFUSALS` for this caller: by name when the policy names it, else `other`."""
    return POLICY_REFUSALS.labels(caller if caller in policy else OTHER_CALLER)
