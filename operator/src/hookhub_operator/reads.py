"""What the API and the console read: events from the index, an event's message from the archive,
its journey, an order's view, a parking lot. Both go through here, so both always show the same
thing."""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aio_pika.abc import AbstractConnection
from hookhub import dlq, specs, topology
from hookhub.providers import WEBHOOK_SOURCE_PREFIX
from hookhub.settings import Settings
from hookhub_eventlog.archive import archived_message
from hookhub_eventlog.journey import Line, consumer_bindings, not_in_the_event_log, the_event
from hookhub_eventlog.journey import journey as journey_of
from hookhub_eventlog.store import EventLog, EventQuery, LoggedEvent
from hookhub_eventlog.store.base import PaymentState, pattern_problem

SEARCH_LIMIT_MAX = 1000
# Header names shown as "(hidden)": none of Hookhub's own headers carries a secret, but an
# event published by something else might.
SECRET_HEADER_WORDS = ("authorization", "secret", "token", "apikey", "api-key", "password")
HIDDEN = "(hidden)"


class NotFound(LookupError):
    """No such event or consumer; the message says which."""


class BadFilter(ValueError):
    """A search filter that cannot be used; the message names it and says what would do."""


def as_time(text: str | None, name: str) -> datetime | None:
    """An ISO 8601 time from a filter (UTC when it names no zone), in UTC; None when empty."""
    if not text:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise BadFilter(
            f"{name} '{text}' is not a time: use ISO 8601, e.g. 2026-11-01 or 2026-11-01T12:00"
        ) from None
    try:
        # In UTC here, where a time at the edge of the calendar (0001-01-01T00:00+14:00) cannot
        # be, rather than in the store, where it was a 500.
        return at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
    except OverflowError:
        raise BadFilter(
            f"{name} '{text}' is out of range: in UTC it falls outside the years 1 to 9999"
        ) from None


@dataclass(frozen=True, slots=True)
class Filters:
    """An event search, as the API's query parameters and the console's form give it."""

    id: str | None = None
    type: str | None = None
    provider: str | None = None
    source: str | None = None
    correlation_id: str | None = None
    order: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    unrouted: bool = False
    limit: int = 50

    def query(self) -> EventQuery:
        if self.provider and self.source:
            raise BadFilter("give provider or source, not both")
        if self.type and (problem := pattern_problem(self.type)):
            raise BadFilter(problem)
        return EventQuery(
            id=self.id,
            type=self.type,
            source=f"/webhooks/{self.provider}" if self.provider else self.source,
            correlation_id=self.correlation_id,
            order_id=self.order,
            since=self.since,
            until=self.until,
            unbound_by=consumer_bindings() if self.unrouted else None,
            limit=self.limit,
        )


async def find_events(event_log: EventLog, filters: Filters) -> list[LoggedEvent]:
    """Indexed events matching every filter given, newest first."""
    return await event_log.find_events(filters.query())


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def shown_headers(headers: dict[str, Any] | None) -> dict[str, str]:
    """A message's headers as text, any secret-looking one hidden."""
    return {
        name: HIDDEN if any(word in name.lower() for word in SECRET_HEADER_WORDS) else _text(value)
        for name, value in (headers or {}).items()
    }


@dataclass(frozen=True, slots=True)
class ArchivedEvent:
    """An indexed event with its message as the archive keeps it; `kept` is False once the
    archive's retention has dropped the message (the index still knows the event)."""

    event: LoggedEvent
    kept: bool
    headers: dict[str, str]
    content_type: str | None
    body: bytes
    person_id: str | None = None  # the person it is about (`hookhub people`), if any

    @property
    def body_text(self) -> str | None:
        """The body for reading: JSON pretty-printed, other UTF-8 text as it is, else None."""
        try:
            text = self.body.decode()
        except UnicodeDecodeError:
            return None
        try:
            return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except (ValueError, RecursionError):  # RecursionError: nested past Python's limit
            return text


def _not_found(event_id: str, source: str | None) -> NotFound:
    return NotFound(not_in_the_event_log(event_id, source))


async def archived_event(
    event_log: EventLog, connection: AbstractConnection, event_id: str, source: str | None = None
) -> ArchivedEvent:
    """The event (`source`, `event_id`) with its message; with no source, `SharedId` when
    events from several sources have the id."""
    found = await the_event(event_log, event_id, source)
    if found is None:
        raise _not_found(event_id, source)
    message = await archived_message(connection, found.position)
    person_id = (await event_log.people_at([found.position])).get(found.position)
    if message is None:
        return ArchivedEvent(found, False, {}, None, b"", person_id)
    return ArchivedEvent(
        found, True, shown_headers(message.headers), message.content_type, message.body, person_id
    )


async def journey(
    event_log: EventLog, event_id: str, source: str | None = None
) -> tuple[LoggedEvent | None, list[Line]]:
    """The event (`source`, `event_id`) and what became of it, oldest first: (when, where,
    what, detail); with no source, `SharedId` when events from several sources have the id.
    The event is None when it is outside the archive and the store recorded what became of it
    (`journey.OUTSIDE_THE_ARCHIVE`)."""
    found = await journey_of(event_log, event_id, source)
    if found is None:
        raise _not_found(event_id, source)
    return found.event, found.timeline()


def known_consumer(name: str) -> str:
    try:
        specs.by_name(name)
    except KeyError as error:
        raise NotFound(error.args[0]) from None
    return name


def matching(
    parked: list[dlq.Parked], type_pattern: str | None, reason: str | None
) -> list[dlq.Parked]:
    """The parked messages whose type matches the topic pattern and whose reason contains the
    text (case ignored); each filter only when given."""
    if type_pattern and (problem := pattern_problem(type_pattern)):
        raise BadFilter(problem)
    return [
        message
        for message in parked
        if (not type_pattern or topology.binding_matches(type_pattern, message.type))
        and (not reason or reason.lower() in message.reason.lower())
    ]


async def parking_lot(
    connection: AbstractConnection,
    consumer: str,
    type_pattern: str | None = None,
    reason: str | None = None,
) -> list[dlq.Parked]:
    """The messages parked in a consumer's dead-letter queue (read, never removed)."""
    parked = await dlq.list_parked(connection, known_consumer(consumer))
    return matching(parked, type_pattern, reason)


# An order's page lists at most this many of its events: an order's life is a few dozen.
MAX_ORDER_EVENTS = 1000
# Where an order waits and which setting holds how long (the payments consumer's deadlines,
# `hookhub_consumers.payments.steps.DEADLINES`): a pending or declined order waits for its
# money from its order.created on; a held payment waits for its order from its first webhook.
WAITS: dict[str, tuple[str, str, str]] = {
    "pending": ("its payment", "deadline.order_payment", "order_payment_timeout_s"),
    "declined": ("another payment", "deadline.order_payment", "order_payment_timeout_s"),
    "held": ("its order (order.created)", "deadline.payment_order", "payment_order_timeout_s"),
}


@dataclass(frozen=True, slots=True)
class Waiting:
    """What an order waits for, and the deadline that ends the wait: set when the order
    entered its status (the event `set_by`), firing `fires_at`."""

    what: str
    deadline: str
    set_by: LoggedEvent | None
    fires_at: datetime | None


@dataclass(frozen=True, slots=True)
class OrderView:
    """Everything the event log knows of one order: its events oldest first (inbound and
    follow-ups: `LoggedEvent.order_id`), the payments consumer's state of it (None when it
    keeps none), its mismatches and what it waits for."""

    order_id: str
    events: list[LoggedEvent]
    payment: PaymentState | None
    mismatches: list[LoggedEvent]
    waiting: Waiting | None
    people: list[str] = field(default_factory=list)  # the persons its events are about

    @property
    def status(self) -> str:
        return self.payment.status if self.payment else "unknown to payments"


def _first(events: list[LoggedEvent], wanted: Callable[[LoggedEvent], bool]) -> LoggedEvent | None:
    return next((e for e in events if wanted(e)), None)


def waiting_of(
    payment: PaymentState | None, events: list[LoggedEvent], settings: Settings
) -> Waiting | None:
    """What the order waits for, from its status (the payments consumer's) and the event that
    set its deadline (the index's: deadlines wait in the broker, never in the archive). The
    deadline was set when that event was handled: `fires_at` is its time plus the timeout, to
    within the time it took to handle it."""
    if payment is None or payment.status not in WAITS:
        return None
    what, deadline, timeout = WAITS[payment.status]
    if payment.status == "held":
        set_by = _first(events, lambda e: e.source.startswith(WEBHOOK_SOURCE_PREFIX))
    else:
        set_by = _first(events, lambda e: e.type == "order.created")
    fires_at = set_by.time + timedelta(seconds=getattr(settings, timeout)) if set_by else None
    return Waiting(what, deadline, set_by, fires_at)


async def order_view(event_log: EventLog, order_id: str, settings: Settings) -> OrderView:
    """The order's view; `NotFound` when neither the index nor the payments consumer knows it."""
    newest_first = await event_log.find_events(
        EventQuery(order_id=order_id, limit=MAX_ORDER_EVENTS)
    )
    events = sorted(newest_first, key=lambda e: (e.time, e.position))
    payment = await event_log.payment_state(order_id)
    if not events and payment is None:
        raise NotFound(f"no event and no payment state for order '{order_id}'")
    mismatches = [e for e in events if e.type == "payment.mismatched"]
    waiting = waiting_of(payment, events, settings)
    by_position = await event_log.people_at([e.position for e in events])
    people = list(
        dict.fromkeys(by_position[e.position] for e in events if e.position in by_position)
    )
    return OrderView(order_id, events, payment, mismatches, waiting, people)
