"""An endpoint's health, as the CLI and the operator show it: success rate, latency, last error,
backlog (its queue's depth) and state."""

import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import aio_pika
from aio_pika.abc import AbstractConnection
from hookhub.settings import Settings

from hookhub_endpoints import queues
from hookhub_endpoints.attempts import attempts_to
from hookhub_endpoints.model import Endpoint

DEFAULT_WINDOW = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class EndpointStats:
    """Of the attempts made since `since`: how many, how many got a 2xx (`success_rate`, None
    with no attempt), the answer time's p50 and p99 in ms, the newest failure's text and time;
    `backlog`, the messages waiting in the endpoint's queue, `retrying` those in its retry
    queues, `parked` those in its parking lot (None when the broker cannot be asked);
    `state`, the endpoint's."""

    name: str
    state: str
    since: datetime
    attempts: int
    delivered: int
    success_rate: float | None
    p50_ms: float | None
    p99_ms: float | None
    last_error: str | None
    last_error_at: datetime | None
    backlog: int | None
    retrying: int | None
    parked: int | None

    def shown(self) -> dict[str, object]:
        values = asdict(self)
        for name in ("since", "last_error_at"):
            values[name] = values[name].isoformat() if values[name] else None
        return values


def percentile(values: list[float], p: float) -> float | None:
    """The nearest-rank `p`-th percentile (0-100), None of nothing."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]


Depths = tuple[int, int, int] | tuple[None, None, None]


async def _depths_on(connection: AbstractConnection, name: str) -> Depths:
    # A channel of its own: a queue not made yet closes the channel that asked (404).
    try:
        async with connection.channel() as channel:
            return await queues.depth(channel, name)
    except Exception:  # queues not made yet (the worker makes them on its next poll)
        return None, None, None


async def _depths(settings: Settings, name: str, connection: AbstractConnection | None) -> Depths:
    if connection is not None:
        return await _depths_on(connection, name)
    try:
        connection = await aio_pika.connect(settings.amqp_url, timeout=settings.connect_timeout_s)
    except Exception:  # the broker's numbers are missing, not the endpoint's stats
        return None, None, None
    async with connection:
        return await _depths_on(connection, name)


async def endpoint_stats(
    settings: Settings,
    endpoint: Endpoint,
    since: datetime | None = None,
    connection: AbstractConnection | None = None,
) -> EndpointStats:
    """The endpoint's health from its recorded attempts since `since` (default: the last
    24 hours) and its queues' depths on the broker, asked on `connection` (a channel of its
    own, closed after) when given: one connection for many endpoints; else on one opened for
    this call."""
    since = since or datetime.now(UTC) - DEFAULT_WINDOW
    attempts = [a for a in await attempts_to(settings, endpoint.name, endpoint.url, since)]
    done = [a for a in attempts if a.delivered or a.error or a.status_code]  # outcome known
    delivered = sum(a.delivered for a in done)
    latencies = [a.latency_ms for a in done if a.latency_ms is not None]
    failed = [a for a in done if not a.delivered]
    backlog, retrying, parked = await _depths(settings, endpoint.name, connection)
    return EndpointStats(
        name=endpoint.name,
        state=endpoint.state,
        since=since,
        attempts=len(done),
        delivered=delivered,
        success_rate=delivered / len(done) if done else None,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        last_error=failed[-1].error or f"HTTP {failed[-1].status_code}" if failed else None,
        last_error_at=failed[-1].at if failed else None,
        backlog=backlog,
        retrying=retrying,
        parked=parked,
    )
