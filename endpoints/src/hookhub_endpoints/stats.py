"""An endpoint's health, as the CLI and the operator show it: success rate, latency, last error,
backlog (its queue's depth) and state."""

from dataclasses import dataclass
from datetime import datetime

from hookhub.settings import Settings

from hookhub_endpoints.model import Endpoint


@dataclass(frozen=True, slots=True)
class EndpointStats:
    """Of the attempts made since `since`: how many, how many got a 2xx (`success_rate`, None
    with no attempt), the answer time's p50 and p99 in ms, the newest failure's text and time;
    `backlog`, the messages waiting in the endpoint's queue and retry queues (None when the
    broker cannot be asked); `state`, the endpoint's."""

    name: str
    state: str
    since: datetime | None
    attempts: int
    delivered: int
    success_rate: float | None
    p50_ms: float | None
    p99_ms: float | None
    last_error: str | None
    last_error_at: datetime | None
    backlog: int | None
    parked: int | None


async def endpoint_stats(
    settings: Settings, endpoint: Endpoint, since: datetime | None = None
) -> EndpointStats:
    """The endpoint's health from its recorded attempts since `since` (default: the last
    24 hours) and its queues' depths on the broker."""
    raise NotImplementedError  # next commit
