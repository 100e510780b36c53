"""The event log's HTTP read API: the queries of `hookhub events` and `hookhub dlq list`, as JSON.

Read-only, for both operator groups; every request comes through Kong (see `auth`).
"""

import base64
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

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
    subject: str | None = Field(None, description="The order id, where there is one")
    correlation_id: str | None = None
    causation_id: str | None = Field(None, description="The event that caused this one")

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
