"""What the overview and providers pages show: the traffic accepted (from the event log's index),
each consumer's queues (from the broker's answers to passive declares), and hub-api's rejections
(from its Prometheus counters, where the operator is told their URL)."""

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import aio_pika
import httpx
from aio_pika.abc import AbstractConnection
from hookhub import specs, topology
from hookhub.providers import PROVIDERS
from hookhub_eventlog.store import EventLog, EventQuery, LoggedEvent
from prometheus_client.parser import text_string_to_metric_families

WINDOW_MIN = 180  # the overview's chart and table: the last three hours, minute by minute
MAX_EVENTS = 50_000  # read from the index for them at most; beyond, the table says so
METRICS_TIMEOUT_S = 2.0
REQUESTS_METRIC = "hookhub_requests"  # hub-api's counter, hookhub_requests_total
# What hub-api means by each refusal (hub_api.webhooks and ingest raise them). A stale
# timestamp and a wrong signature are both 401: hub-api counts them together.
STATUS_MEANS = {
    "400": "malformed body or handshake",
    "401": "signature rejected (bad or stale), or not through the gateway",
    "403": "type not allowed to this caller / wrong verify token",
    "404": "provider disabled or unknown",
    "405": "method not allowed",
    "413": "body too large",
    "415": "wrong media type",
    "422": "no valid event type or CloudEvent",
    "503": "broker unavailable (not accepted)",
}


def origin(source: str) -> str | None:
    """Who sent an accepted event: the provider (`stripe`), or the internal caller
    (`jenkins (internal)`); None for what the consumers emitted."""
    if source.startswith("/webhooks/"):
        return source.removeprefix("/webhooks/")
    if source.startswith("/events/"):
        return f"{source.removeprefix('/events/')} (internal)"
    return None


@dataclass(frozen=True, slots=True)
class TrafficRow:
    origin: str
    type: str
    events: int
    last_at: datetime


@dataclass
class Traffic:
    """Events accepted in the last `len(per_minute)` minutes: counts per minute (oldest first),
    and per origin and type (busiest first)."""

    per_minute: list[int]
    rows: list[TrafficRow] = field(default_factory=list)
    truncated: bool = False  # more events than MAX_EVENTS: older minutes are undercounted

    @property
    def total(self) -> int:
        return sum(self.per_minute)

    @property
    def peak(self) -> int:
        return max(self.per_minute, default=0)


def traffic(events: list[LoggedEvent], now: datetime, window_min: int) -> Traffic:
    start = now - timedelta(minutes=window_min)
    per_minute = [0] * window_min
    counts: Counter[tuple[str, str]] = Counter()
    last: dict[tuple[str, str], datetime] = {}
    for event in events:
        sender = origin(event.source)
        if sender is None or not start <= event.time < now:
            continue
        per_minute[int((event.time - start).total_seconds() // 60)] += 1
        key = (sender, event.type)
        counts[key] += 1
        last[key] = max(last.get(key, event.time), event.time)
    rows = [TrafficRow(o, t, n, last[(o, t)]) for (o, t), n in counts.most_common()]
    return Traffic(per_minute, rows)


async def accepted_traffic(
    event_log: EventLog, now: datetime, window_min: int = WINDOW_MIN
) -> Traffic:
    since = now - timedelta(minutes=window_min)
    events = await event_log.find_events(EventQuery(since=since, limit=MAX_EVENTS))
    found = traffic(events, now, window_min)
    found.truncated = len(events) == MAX_EVENTS
    return found


@dataclass(frozen=True, slots=True)
class ConsumerQueues:
    """One consumer's queues as the broker counts them; None for a queue that is missing.
    `waiting` counts the messages ready for delivery (not those a consumer holds unacked)."""

    consumer: str
    waiting: int | None
    subscribers: int | None
    retrying: int | None
    parked: int | None


async def _counts(connection: AbstractConnection, queue: str) -> tuple[int, int] | None:
    # A passive declare of a missing queue closes its channel: one channel per queue.
    channel = await connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
    except aio_pika.exceptions.ChannelNotFoundEntity:
        return None
    finally:
        if not channel.is_closed:
            await channel.close()
    result = declared.declaration_result
    return result.message_count, result.consumer_count


async def consumer_queues(
    connection: AbstractConnection, retry_delays_s: tuple[float, ...]
) -> list[ConsumerQueues]:
    rows = []
    for consumer in specs.names():
        work = await _counts(connection, topology.work_queue(consumer))
        retries = [
            await _counts(connection, topology.retry_queue(consumer, d)) for d in retry_delays_s
        ]
        parked = await _counts(connection, topology.dead_letter_queue(consumer))
        rows.append(
            ConsumerQueues(
                consumer,
                waiting=work[0] if work else None,
                subscribers=work[1] if work else None,
                retrying=None if None in retries else sum(r[0] for r in retries if r),
                parked=parked[0] if parked else None,
            )
        )
    return rows


@dataclass(frozen=True, slots=True)
class Refusals:
    """hub-api's refusals since it started, by provider (`-` for internal events) and status."""

    counts: dict[tuple[str, str], int]

    def of(self, provider: str) -> dict[str, int]:
        return {status: n for (p, status), n in sorted(self.counts.items()) if p == provider}

    def by_status(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for (_, status), n in self.counts.items():
            total[status] += n
        return dict(sorted(total.items()))


def refusals(metrics_text: str) -> Refusals:
    """hub-api's 4xx and 5xx answers, from its Prometheus exposition."""
    counts: Counter[tuple[str, str]] = Counter()
    for family in text_string_to_metric_families(metrics_text):
        if family.name != REQUESTS_METRIC:
            continue
        for sample in family.samples:
            status = sample.labels.get("status", "")
            if sample.name.endswith("_total") and status[:1] in ("4", "5"):
                counts[(sample.labels.get("provider", "-"), status)] += int(sample.value)
    return Refusals(dict(counts))


async def read_refusals(metrics_url: str | None) -> Refusals | None:
    """hub-api's refusals, read from `metrics_url`; None when it is not set or does not answer.
    One hub-api process's counters: behind a load balancer, Prometheus holds the sum."""
    if not metrics_url:
        return None
    try:
        async with httpx.AsyncClient(timeout=METRICS_TIMEOUT_S) as client:
            response = await client.get(metrics_url)
            response.raise_for_status()
    except httpx.HTTPError:
        return None
    return refusals(response.text)


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    enabled: bool | None  # None: this process is not given the providers' secrets
    last: LoggedEvent | None
    refused: dict[str, int]


async def providers(
    event_log: EventLog, enabled: set[str] | None, refused: Refusals | None
) -> list[Provider]:
    """Each provider in the provider table, its latest event in the index and its refusals."""
    found = []
    for name in PROVIDERS:
        latest = await event_log.find_events(EventQuery(source=f"/webhooks/{name}", limit=1))
        found.append(
            Provider(
                name,
                enabled=None if enabled is None else name in enabled,
                last=latest[0] if latest else None,
                refused=refused.of(name) if refused else {},
            )
        )
    return found
