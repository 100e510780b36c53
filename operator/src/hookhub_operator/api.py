"""The event log's HTTP read API: the queries of `hookhub events` and `hookhub dlq list`, as JSON.

Read-only, for both operator groups; every request comes through Kong (see `auth`).
"""

import base64
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query
from hookhub import asyncapi, topology
from hookhub_eventlog.journey import OUTSIDE_THE_ARCHIVE
from hookhub_eventlog.store import LoggedEvent
from pydantic import BaseModel, Field

from hookhub_operator import reads
from hookhub_operator.deps import BrokerDep, FiltersDep, ServiceDep, current_operator


class Problem(BaseModel):
    detail: str = Field(description="What went wrong, and what to do about it")


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    means = {
        401: "Not through the gateway, or no authenticated caller",
        403: "The caller is in neither operator group",
        404: "No such event or consumer",
        409: "Events from several sources have this id: the answer lists them (`events`); "
        "ask again with `?source=`",
        422: "A filter that cannot be used",
        503: "RabbitMQ did not answer; try again shortly",
    }
    return {
        status: {
            "model": SharedIdProblem if status == 409 else Problem,
            "description": means[status],
        }
        for status in statuses
    }


router = APIRouter(
    prefix="/api",
    tags=["event log"],
    dependencies=[Depends(current_operator)],
    responses=_problems(401, 403),
)


class EventOut(BaseModel):
    """An archived event, as the event log's index knows it."""

    position: int = Field(description="Its offset in the archive stream")
    id: str
    source: str
    type: str
    time: datetime
    subject: str | None = Field(None, description="The order id a follow-up is about")
    correlation_id: str | None = None
    causation_id: str | None = Field(None, description="The event that caused this one")
    order_id: str | None = Field(
        None, description="The order it concerns: its subject, or the order id its payload keeps"
    )

    @classmethod
    def of(cls, event: LoggedEvent) -> "EventOut":
        return cls(**asdict(event))


class EventDetail(EventOut):
    """An event with its message as the archive keeps it."""

    kept: bool = Field(description="False once the archive's retention dropped the message")
    headers: dict[str, str] = Field(description="The message's headers (secret-looking hidden)")
    content_type: str | None
    body: str | None = Field(description="The body as UTF-8 text; null when it is not text")
    body_base64: str = Field(description="The body byte-for-byte")


class SharedIdProblem(Problem):
    """Events from several sources have the id asked for; choose one with `?source=`."""

    events: list[EventOut] = Field(description="Every event with the id, one per source")


class JourneyLine(BaseModel):
    at: datetime
    where: str = Field(description="`hub`, a consumer, or the source of a follow-up")
    what: str = Field(description="accepted, processed, retried, parked, replayed, purged, ...")
    detail: str


class Journey(BaseModel):
    event: EventOut | None = Field(
        description="None when the event is outside the archive (accepted before it was "
        "enabled, or past its retention): the timeline is what the consumers' store recorded"
    )
    note: str | None = Field(None, description="Why `event` is missing, when it is")
    timeline: list[JourneyLine] = Field(description="Oldest first")


class ParkedOut(BaseModel):
    id: str
    type: str
    reason: str
    attempts: int
    failed_at: str


class ParkingLot(BaseModel):
    consumer: str
    queue: str
    parked: list[ParkedOut]


@router.get("/events", response_model=list[EventOut], responses=_problems(422))
async def list_events(service: ServiceDep, filters: FiltersDep) -> list[EventOut]:
    """Archived events matching every filter given, newest first (as `hookhub events list`)."""
    return [EventOut.of(e) for e in await reads.find_events(service.event_log, filters)]


SourceQuery = Annotated[
    str | None,
    Query(
        description="The event's source (`/webhooks/stripe`, `/events/storefront`, ...): an id "
        "is unique only within its source, so this chooses when several sources have it"
    ),
]


@router.get(
    "/events/{event_id:path}/journey", response_model=Journey, responses=_problems(404, 409)
)
async def event_journey(service: ServiceDep, event_id: str, source: SourceQuery = None) -> Journey:
    """What became of an event: accepted, each consumer's outcome, retries, parking, replays
    (with the operator who asked), the follow-ups it caused and its notification deliveries.
    When events from several sources have the id and no `source` is given: 409, listing them.
    An event outside the archive (accepted before it was enabled, or past its retention) whose
    journey the store recorded: `event` null, with a `note`; known to neither: 404."""
    event, lines = await reads.journey(service.event_log, event_id, source)
    timeline = [JourneyLine(at=a, where=w, what=what, detail=d) for a, w, what, d in lines]
    if event is None:
        return Journey(event=None, note=OUTSIDE_THE_ARCHIVE, timeline=timeline)
    return Journey(event=EventOut.of(event), timeline=timeline)


@router.get(
    "/events/{event_id:path}", response_model=EventDetail, responses=_problems(404, 409, 503)
)
async def show_event(
    service: ServiceDep, connection: BrokerDep, event_id: str, source: SourceQuery = None
) -> EventDetail:
    """One archived event: its attributes, headers and body, as the broker keeps them. When
    events from several sources have the id and no `source` is given: 409, listing them."""
    found = await reads.archived_event(service.event_log, connection, event_id, source)
    try:
        text = found.body.decode()
    except UnicodeDecodeError:
        text = None
    return EventDetail(
        **asdict(found.event),
        kept=found.kept,
        headers=found.headers,
        content_type=found.content_type,
        body=text,
        body_base64=base64.b64encode(found.body).decode(),
    )


class Money(BaseModel):
    """An order's money in minor units (cents), as the payments consumer keeps it."""

    expected: int | None = Field(description="The order's amount, as order.created said it")
    currency: str | None
    paid: int | None = Field(description="What the provider approved, in `paid_currency`")
    paid_currency: str | None
    refunded: int = Field(description="Refunded of the payment so far, in `paid_currency`")
    provider: str | None
    payment_id: str | None
    mismatches: list[EventOut] = Field(description="Its payment.mismatched events, oldest first")


class OrderEvent(EventOut):
    journey: str = Field(description="This event's journey in the API (the path)")


class WaitingOut(BaseModel):
    what: str = Field(description="What the order waits for")
    deadline: str = Field(description="The deadline's type, which fires if it never comes")
    set_by: EventOut | None = Field(description="The event whose handling set the deadline")
    fires_at: datetime | None = Field(description="When it fires: set_by's time plus the timeout")


class OrderOut(BaseModel):
    order_id: str
    status: str = Field(description="The payments consumer's status of it")
    money: Money | None = Field(description="None when the payments consumer keeps no state of it")
    events: list[OrderEvent] = Field(description="Inbound and follow-ups, oldest first")
    waiting: WaitingOut | None = Field(description="None when it waits for nothing")


def _journey_path(event: LoggedEvent) -> str:
    return f"/api/events/{quote(event.id, safe='')}/journey?source={quote(event.source, safe='')}"


@router.get("/orders/{order_id:path}", response_model=OrderOut, responses=_problems(404))
async def order(service: ServiceDep, order_id: str) -> OrderOut:
    """One order: its status and money (the payments consumer's, read only), every event that
    concerns it in time order (order.created, the provider's payments, the follow-ups) with a
    link to each one's journey, and what it waits for (the deadline and when it fires). 404 when
    neither the event log nor the payments consumer knows it."""
    view = await reads.order_view(service.event_log, order_id, service.settings)
    payment = view.payment
    money = None
    if payment is not None:
        money = Money(
            expected=payment.amount,
            currency=payment.currency,
            paid=payment.paid_amount,
            paid_currency=payment.paid_currency,
            refunded=payment.refunded_amount,
            provider=payment.provider,
            payment_id=payment.payment_id,
            mismatches=[EventOut.of(e) for e in view.mismatches],
        )
    waiting = None
    if view.waiting is not None:
        w = view.waiting
        set_by = EventOut.of(w.set_by) if w.set_by else None
        waiting = WaitingOut(what=w.what, deadline=w.deadline, set_by=set_by, fires_at=w.fires_at)
    return OrderOut(
        order_id=order_id,
        status=view.status,
        money=money,
        events=[OrderEvent(**asdict(e), journey=_journey_path(e)) for e in view.events],
        waiting=waiting,
    )


@router.get("/parking-lots/{consumer}", response_model=ParkingLot, responses=_problems(404, 503))
async def parking_lot(
    connection: BrokerDep,
    consumer: str,
    type: Annotated[str | None, Query(description="Only types matching this pattern")] = None,
    reason: Annotated[str | None, Query(description="Only reasons containing this text")] = None,
) -> ParkingLot:
    """The messages parked in a consumer's dead-letter queue, with why they failed (read, never
    removed; the first 1,000)."""
    parked = await reads.parking_lot(connection, consumer, type, reason)
    return ParkingLot(
        consumer=consumer,
        queue=topology.dead_letter_queue(consumer),
        parked=[
            ParkedOut(
                id=p.id, type=p.type, reason=p.reason, attempts=p.attempts, failed_at=p.failed_at
            )
            for p in parked
        ],
    )


@router.get("/asyncapi.json", response_model=dict[str, Any])
async def asyncapi_document() -> dict[str, Any]:
    """The hub's AsyncAPI 3.0 document: the exchange and queues, the event types on each (with
    their data contracts), who sends and who receives them; generated from the consumers'
    specs."""
    return asyncapi.document()
